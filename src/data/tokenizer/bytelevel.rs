//! GPT-2's byte-level alphabet and pre-tokeniser, shared by every byte-level BPE.
//!
//! **Bytes as printable characters.** Byte-level BPE works on the UTF-8 bytes of the text, so
//! any string can be encoded with no unknown token. To keep vocabularies and merge files
//! readable text, GPT-2 shows each of the 256 bytes as one printable Unicode character: the 188
//! bytes that are already printable (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves and
//! the other 68 (space, control bytes, ...) are shifted to `U+0100` and up, in byte order. So a
//! space is `Ġ` (`U+0120`) and a newline is `Ċ` (`U+010A`): `"Ġthe"` is the token for `" the"`.
//!
//! **Pre-tokenisation.** Merges never cross the boundaries of the pieces cut by GPT-2's pattern
//!
//! ```text
//! 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//! ```
//!
//! — contractions, a word with its leading space, a number, a run of punctuation, whitespace.
//! The `regex` crate has no look-ahead, so [`pre_tokenize`] matches the pattern without
//! `\s+(?!\S)` and applies that alternative by hand: a whitespace run of two or more characters
//! that is followed by more text gives up its last character, which then starts the next piece
//! (so `"a  b"` is `["a", " ", " b"]`, exactly as GPT-2 cuts it).
//!
//! ```
//! use kiln::data::tokenizer::bytelevel::{pre_tokenize, bytes_to_unicode};
//! assert_eq!(pre_tokenize("Hello  world's 42!"), vec!["Hello", " ", " world", "'s", " 42", "!"]);
//! assert_eq!((bytes_to_unicode()[b' ' as usize], bytes_to_unicode()[b'\n' as usize]), ('Ġ', 'Ċ'));
//! ```

use std::sync::OnceLock;

use regex::Regex;

/// GPT-2's pattern without the look-ahead alternative `\s+(?!\S)` (see the module notes).
const PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// The printable character that stands for each byte (GPT-2's `bytes_to_unicode`).
pub fn bytes_to_unicode() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
        let mut table = ['\0'; 256];
        let mut shifted = 0;
        for b in 0..256u32 {
            table[b as usize] = if printable(b) {
                char::from_u32(b).unwrap_or('\0')
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap_or('\0')
            };
        }
        table
    })
}

/// The byte a byte-level character stands for, or `None` for a character outside the alphabet.
pub fn unicode_to_byte(c: char) -> Option<u8> {
    let c = c as u32;
    match c {
        33..=126 | 161..=172 | 174..=255 => Some(c as u8),
        256..=323 => {
            // The 68 non-printable bytes, in byte order.
            let k = (c - 256) as usize;
            (0..=255u8)
                .filter(|&b| !matches!(b, 33..=126 | 161..=172 | 174..=255))
                .nth(k)
        }
        _ => None,
    }
}

/// The byte-level form of `text`: each UTF-8 byte as its printable character.
pub fn to_byte_level(text: &str) -> String {
    let table = bytes_to_unicode();
    text.bytes().map(|b| table[b as usize]).collect()
}

/// The bytes behind a byte-level string, or `None` if it holds a character outside the alphabet.
pub fn from_byte_level(s: &str) -> Option<Vec<u8>> {
    s.chars().map(unicode_to_byte).collect()
}

/// Cut `text` into GPT-2's pre-tokens (see the module notes). The pieces concatenate back to
/// `text`.
pub fn pre_tokenize(text: &str) -> Vec<&str> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(PATTERN).expect("GPT-2 pattern is valid"));
    let mut pieces = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let Some(m) = re.find_at(text, pos) else {
            break; // unreachable: `\s+` and `[^\s\p{L}\p{N}]+` cover every character
        };
        let mut end = m.end();
        let piece = m.as_str();
        // `\s+(?!\S)`: a whitespace run followed by text leaves its last character to the
        // next piece (`\s+` is greedy, so the next character is not whitespace).
        if end < text.len() && piece.chars().all(char::is_whitespace) {
            if let Some((last, _)) = piece.char_indices().next_back().filter(|&(i, _)| i > 0) {
                end = m.start() + last;
            }
        }
        pieces.push(&text[m.start()..end]);
        pos = end;
    }
    pieces
}

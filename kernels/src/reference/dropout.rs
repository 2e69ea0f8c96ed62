//! CPU twin of `dropout.wgsl`: Philox4x32-10 and the dropout mask, bit for bit.

use num_traits::Float;

use crate::launch::dropout::{Stream, dropout_threshold};

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with ten rounds (Salmon et al. 2011), as in Random123 and cuRAND.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = M0 as u64 * c[0] as u64;
        let p1 = M1 as u64 * c[2] as u64;
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// Word `i` of `stream`, for `i < numel` (dropout.wgsl:bits).
pub fn bits(stream: Stream, numel: usize) -> Vec<u32> {
    let key = [stream.key as u32, (stream.key >> 32) as u32];
    (0..numel)
        .map(|i| {
            let mut ctr = stream.counter;
            ctr[0] = ctr[0].wrapping_add((i / 4) as u32);
            philox4x32_10(ctr, key)[i % 4]
        })
        .collect()
}

/// The dropout mask of `stream` with drop probability `p` in `[0, 1)` (dropout.wgsl:dropout_mask):
/// 0 where the word is below `floor(p * 2^32)`, else `1 / (1 - p)` (computed in f32, as the
/// launcher does).
pub fn dropout_mask<T: Float>(stream: Stream, p: f32, numel: usize) -> Vec<T> {
    let threshold = dropout_threshold(p);
    let scale = T::from(1.0f32 / (1.0 - p)).expect("f32 fits");
    bits(stream, numel)
        .into_iter()
        .map(|w| if w < threshold { T::zero() } else { scale })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors from Random123 (`kat_vectors`, philox4x32 with 10 rounds).
    #[test]
    fn philox_matches_random123_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn threshold_and_mask() {
        assert_eq!(dropout_threshold(0.0), 0);
        assert_eq!(dropout_threshold(0.5), 1 << 31);
        assert_eq!(dropout_threshold(0.25), 1 << 30);
        let m: Vec<f32> = dropout_mask(Stream::new(7), 0.5, 4000);
        let dropped = m.iter().filter(|&&v| v == 0.0).count();
        assert!(m.iter().all(|&v| v == 0.0 || v == 2.0));
        // Binomial(4000, 0.5): sd ~ 31.6; 6 sd = 190.
        assert!(
            (dropped as i64 - 2000).abs() < 190,
            "dropped {dropped} of 4000"
        );
    }
}

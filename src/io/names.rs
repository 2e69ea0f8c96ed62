//! Name patterns over dotted parameter names (`--freeze`, `--init-skip`, LoRA targets).
//!
//! `*` matches any run of characters (dots included), `?` one character, anything else itself.
//! A pattern *selects* a name when it matches the whole name or a dotted prefix of it, so
//! `features`, `features.*` and `features.0` select whole modules, `*.bias` every bias.
//!
//! ```
//! use kiln::io::names::pattern_matches;
//! assert!(pattern_matches("features.*", "features.0.weight"));
//! assert!(pattern_matches("features", "features.3.bias"));      // a module prefix
//! assert!(pattern_matches("*.bias", "classifier.4.bias"));
//! assert!(!pattern_matches("features", "features_extra.weight"));
//! assert!(!pattern_matches("classifier.?.bias", "classifier.4.weight"));
//! ```

/// True when glob `pattern` matches all of `name` (`*`: any run, `?`: one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None; // (pattern index after `*`, name index)
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i + 1, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// True when `pattern` selects `name`: it matches the whole name or a dotted prefix of it.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    glob_match(pattern, name)
        || name
            .match_indices('.')
            .any(|(k, _)| glob_match(pattern, &name[..k]))
}

/// True when any of `patterns` selects `name`.
pub fn any_match(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| pattern_matches(p, name))
}

//! How numbers and shapes are printed in messages, written once: `12,345` and `(2, 3)`.
//!
//! ```
//! use kiln::show;
//! assert_eq!(show::digits(1234567), "1,234,567");
//! assert_eq!(show::shape(&[2, 3]), "(2, 3)");
//! assert_eq!(show::shape(&[4]), "(4,)");
//! assert_eq!(show::shape(&[]), "()");
//! ```

/// `n` with its digits grouped by thousands: `12,345`.
pub fn digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A shape as a Python tuple, the way PyTorch users read it: `(2, 3)`, `(3,)` for one dim,
/// `()` for a scalar.
pub fn shape(dims: &[usize]) -> String {
    match dims {
        [d] => format!("({d},)"),
        _ => {
            let v: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            format!("({})", v.join(", "))
        }
    }
}

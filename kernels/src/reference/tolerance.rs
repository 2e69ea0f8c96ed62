//! Tolerance as a type: how close a GPU result must be to its CPU twin, and why.
//!
//! Two values pass when `|x - y| <= max(rel * |x + y|, abs)` (a relative bound that degrades to
//! an absolute one near zero). NaN matches only NaN; infinities must agree exactly.

/// A tolerance with the reason for its size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Relative part, applied to `|x + y|`.
    pub rel: f64,
    /// Absolute floor.
    pub abs: f64,
    /// Why this much error is expected (printed on failure).
    pub why: &'static str,
}

/// The first failing element and the worst difference, as printed by a failing test.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// Index of the first element out of tolerance.
    pub index: usize,
    /// GPU value there.
    pub got: f64,
    /// Reference value there.
    pub want: f64,
    /// Largest `|got - want|` anywhere, and where.
    pub worst: (usize, f64),
    /// How many elements failed.
    pub failures: usize,
    /// Total elements compared.
    pub len: usize,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} elements out of tolerance; first at index {}: got {:e}, want {:e}; \
             worst |diff| {:e} at index {}",
            self.failures, self.len, self.index, self.got, self.want, self.worst.1, self.worst.0
        )
    }
}

impl Tolerance {
    /// Exact equality (integer results, copies).
    pub const EXACT: Tolerance = Tolerance {
        rel: 0.0,
        abs: 0.0,
        why: "bit-exact copy or integer op",
    };
    /// One or a few f32 roundings (elementwise arithmetic).
    pub const F32_ELEMENTWISE: Tolerance = Tolerance {
        rel: 1e-5,
        abs: 1e-6,
        why: "a few f32 roundings per element",
    };
    /// Transcendental functions: GPU `exp`/`log`/`tanh` are allowed several ulp.
    pub const F32_TRANSCENDENTAL: Tolerance = Tolerance {
        rel: 2e-4,
        abs: 2e-6,
        why: "GPU exp/log/pow/tanh are accurate to a few ulp only",
    };
    /// Reductions and dot products over many terms: summation order differs from the CPU.
    pub const F32_REDUCTION: Tolerance = Tolerance {
        rel: 1e-4,
        abs: 1e-5,
        why: "f32 sums of many terms in a different order",
    };

    /// f32 dot products of K terms in [-1, 1) against an f64 oracle (matmul, its rungs and the
    /// ops built on it): the rounding error grows with K (at worst ~K ulp of the sum of |terms|),
    /// and a sum that cancels to ~0 has no relative accuracy, hence an absolute floor of 2e-6 * K.
    pub fn f32_dot(k: usize) -> Tolerance {
        Tolerance::new(
            1e-4,
            2e-6 * k as f64,
            "f32 K-term dot products (different summation order, fma) vs f64; abs floor 2e-6 * K",
        )
    }

    /// A custom tolerance.
    pub const fn new(rel: f64, abs: f64, why: &'static str) -> Self {
        Tolerance { rel, abs, why }
    }

    /// True when `got` and `want` agree.
    pub fn close(&self, got: f64, want: f64) -> bool {
        if got.is_nan() || want.is_nan() {
            return got.is_nan() && want.is_nan();
        }
        if got.is_infinite() || want.is_infinite() {
            return got == want;
        }
        (got - want).abs() <= (self.rel * (got + want).abs()).max(self.abs)
    }

    /// Compare two slices element by element.
    pub fn compare<A: Into<f64> + Copy, B: Into<f64> + Copy>(
        &self,
        got: &[A],
        want: &[B],
    ) -> Result<(), Mismatch> {
        assert_eq!(
            got.len(),
            want.len(),
            "length mismatch: got {} want {}",
            got.len(),
            want.len()
        );
        let mut first = None;
        let mut failures = 0;
        let mut worst = (0usize, 0.0f64);
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let (g, w) = (g.into(), w.into());
            let d = (g - w).abs();
            if d > worst.1 || (d.is_nan() && !worst.1.is_nan()) {
                worst = (i, d);
            }
            if !self.close(g, w) {
                failures += 1;
                first.get_or_insert((i, g, w));
            }
        }
        match first {
            None => Ok(()),
            Some((index, got, want)) => Err(Mismatch {
                index,
                got,
                want,
                worst,
                failures,
                len: 0,
            }),
        }
        .map_err(|mut m: Mismatch| {
            m.len = got.len();
            m
        })
    }

    /// Compare and panic with a full report (for tests).
    #[track_caller]
    pub fn assert_close<A: Into<f64> + Copy, B: Into<f64> + Copy>(
        &self,
        what: &str,
        got: &[A],
        want: &[B],
    ) {
        if let Err(m) = self.compare(got, want) {
            panic!(
                "{what}: {m}\n  tolerance rel {:e} abs {:e} ({})",
                self.rel, self.abs, self.why
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tolerance;

    #[test]
    fn tolerance_catches_and_reports() {
        let t = Tolerance::F32_ELEMENTWISE;
        assert!(t.compare(&[1.0f32, 2.0], &[1.0f32, 2.0]).is_ok());
        let m = t
            .compare(&[1.0f32, 2.5, 3.0], &[1.0f32, 2.0, 3.1])
            .unwrap_err();
        assert_eq!(m.index, 1);
        assert_eq!(m.failures, 2);
        assert_eq!(m.len, 3);
        assert!((m.worst.1 - 0.5).abs() < 1e-6);
        assert!(!t.close(f64::NAN, 1.0));
        assert!(t.close(f64::NAN, f64::NAN));
    }
}

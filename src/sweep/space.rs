//! The search space: one distribution per hyperparameter, read from `[sweep.space]`.
//!
//! ```toml
//! [sweep.space]
//! lr = { log-uniform = [1e-4, 1e-1] }   # exp(U(ln lo, ln hi))
//! weight_decay = { uniform = [0.0, 0.1] }
//! width = { int = [32, 256] }           # a whole number in [lo, hi]
//! batch_size = { choice = [32, 64] }    # one of the values
//! optimizer = ["adam", "sgd"]           # a list: the grid's values (random: a choice)
//! ```
//!
//! A key names a setting of `kiln train`'s config file: a top-level key (`width`, `layers`,
//! `dropout`), a `[train]` key (`lr`, `batch_size`, `optimizer`, `weight_decay`, `schedule`,
//! `epochs`, ...), or either written out (`train.lr`).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// How one hyperparameter is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// A list of values: the grid's axis (random search picks one uniformly).
    Grid(Vec<toml::Value>),
    /// One of the values, uniformly (random search; a grid axis too).
    Choice(Vec<toml::Value>),
    /// A float in [lo, hi).
    Uniform(f64, f64),
    /// `exp(U(ln lo, ln hi))`: for rates and decays spanning decades.
    LogUniform(f64, f64),
    /// A whole number in [lo, hi].
    Int(i64, i64),
}

impl Distribution {
    /// True for distributions best seen on a log axis.
    pub fn is_log(&self) -> bool {
        matches!(self, Distribution::LogUniform(..))
    }

    fn parse(key: &str, v: &toml::Value) -> Result<Distribution> {
        let bad = |m: String| Err(Error::Config(format!("sweep.space.{key}: {m}")));
        if let toml::Value::Array(a) = v {
            if a.is_empty() {
                return bad("an empty list of values".into());
            }
            return Ok(Distribution::Grid(a.clone()));
        }
        let toml::Value::Table(t) = v else {
            return bad(format!(
                "expected a list of values or a table like {{ log-uniform = [1e-4, 0.1] }}, \
                 got {v}"
            ));
        };
        if t.len() != 1 {
            return bad("give exactly one of choice, uniform, log-uniform, int".into());
        }
        let (kind, arg) = t.iter().next().expect("one entry");
        let pair = |what: &str| -> Result<(f64, f64)> {
            let nums: Vec<f64> = match arg {
                toml::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)))
                    .collect(),
                _ => Vec::new(),
            };
            match nums[..] {
                // A finite width too: sampling needs hi - lo.
                [lo, hi] if lo < hi && (hi - lo).is_finite() => Ok((lo, hi)),
                _ => Err(Error::Config(format!(
                    "sweep.space.{key}: {what} needs [low, high] with low < high, got {arg}"
                ))),
            }
        };
        match kind.as_str() {
            "choice" => match arg {
                toml::Value::Array(a) if !a.is_empty() => Ok(Distribution::Choice(a.clone())),
                _ => bad(format!("choice needs a non-empty list, got {arg}")),
            },
            "uniform" => {
                let (lo, hi) = pair("uniform")?;
                Ok(Distribution::Uniform(lo, hi))
            }
            "log-uniform" => {
                let (lo, hi) = pair("log-uniform")?;
                if lo <= 0.0 {
                    return bad(format!(
                        "log-uniform bounds must be > 0 (a log scale), got [{lo}, {hi}]"
                    ));
                }
                Ok(Distribution::LogUniform(lo, hi))
            }
            "int" => {
                let (lo, hi) = pair("int")?;
                if lo.fract() != 0.0 || hi.fract() != 0.0 {
                    return bad(format!(
                        "int bounds must be whole numbers, got [{lo}, {hi}]"
                    ));
                }
                Ok(Distribution::Int(lo as i64, hi as i64))
            }
            other => bad(format!(
                "unknown distribution `{other}` (choice, uniform, log-uniform, int)"
            )),
        }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> toml::Value {
        match self {
            Distribution::Grid(v) | Distribution::Choice(v) => {
                v[rng.random_range(0..v.len())].clone()
            }
            Distribution::Uniform(lo, hi) => toml::Value::Float(rng.random_range(*lo..*hi)),
            Distribution::LogUniform(lo, hi) => {
                toml::Value::Float(rng.random_range(lo.ln()..hi.ln()).exp())
            }
            Distribution::Int(lo, hi) => toml::Value::Integer(rng.random_range(*lo..=*hi)),
        }
    }
}

/// The most points a grid search may have (each is a training run).
pub const MAX_GRID: usize = 100_000;

/// Hyperparameters by key (sorted), each with its distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    /// The distributions.
    pub params: BTreeMap<String, Distribution>,
}

/// One trial's values, by key.
pub type Params = BTreeMap<String, toml::Value>;

impl Space {
    /// Read `[sweep.space]`.
    pub fn parse(t: &toml::Table) -> Result<Space> {
        if t.is_empty() {
            return Err(Error::Config(
                "sweep.space is empty: name at least one hyperparameter to search".into(),
            ));
        }
        let mut params = BTreeMap::new();
        for (k, v) in t {
            params.insert(k.clone(), Distribution::parse(k, v)?);
        }
        Ok(Space { params })
    }

    /// Every point of the grid, in a fixed order (the last key varies fastest). Errors when a
    /// hyperparameter has a continuous distribution.
    pub fn grid(&self) -> Result<Vec<Params>> {
        // Count the points before building them: a few long lists multiply past any budget.
        let count = self.params.values().try_fold(1usize, |n, d| match d {
            Distribution::Grid(v) | Distribution::Choice(v) => n.checked_mul(v.len()),
            _ => Some(n),
        });
        if count.is_none_or(|n| n > MAX_GRID) {
            let sizes: Vec<String> = self
                .params
                .iter()
                .filter_map(|(k, d)| match d {
                    Distribution::Grid(v) | Distribution::Choice(v) => {
                        Some(format!("{k} {}", v.len()))
                    }
                    _ => None,
                })
                .collect();
            return Err(Error::Config(format!(
                "sweep.space: the grid ({}) has more than {MAX_GRID} points; search fewer \
                 values or use method = \"random\"",
                sizes.join(" x ")
            )));
        }
        let mut points: Vec<Params> = vec![Params::new()];
        for (k, d) in &self.params {
            let values = match d {
                Distribution::Grid(v) | Distribution::Choice(v) => v,
                _ => {
                    return Err(Error::Config(format!(
                        "sweep.space.{k}: a grid search needs a list of values, not a \
                         distribution (use method = \"random\" or \"asha\")"
                    )));
                }
            };
            points = points
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut q = p.clone();
                        q.insert(k.clone(), v.clone());
                        q
                    })
                })
                .collect();
        }
        Ok(points)
    }

    /// The values of trial `index` of a random search seeded with `seed`: a pure function of
    /// (seed, index), so a resumed sweep draws what an uninterrupted one would.
    pub fn sample(&self, seed: u64, index: usize) -> Params {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.params
            .iter()
            .map(|(k, d)| (k.clone(), d.sample(&mut rng)))
            .collect()
    }
}

/// Set `key` = `value` in a `kiln train` config table: at the top level when `accepts` says the
/// key belongs there, else under `[train]`; a dotted key (`train.lr`) goes where it says.
pub fn set_param(
    table: &mut toml::Table,
    key: &str,
    value: toml::Value,
    accepts: &dyn Fn(&toml::Table) -> bool,
) -> Result<()> {
    let mut path: Vec<&str> = key.split('.').collect();
    if path.len() == 1 {
        let mut probe = table.clone();
        probe.insert(key.to_string(), value.clone());
        if accepts(&probe) {
            *table = probe;
            return Ok(());
        }
        path = vec!["train", key];
    }
    let (last, dirs) = path.split_last().expect("a non-empty key");
    let mut probe = table.clone();
    let mut t = &mut probe;
    for d in dirs {
        let entry = t
            .entry(d.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(x) => x,
            _ => {
                return Err(Error::Config(format!(
                    "sweep.space.{key}: `{d}` is not a section of the config"
                )));
            }
        };
    }
    t.insert(last.to_string(), value);
    if !accepts(&probe) {
        return Err(Error::Config(format!(
            "sweep.space.{key}: not a setting of `kiln train` (or the value does not fit it): \
             a key of the config file such as lr, batch_size, optimizer, weight_decay, \
             schedule, epochs, width, layers, dropout, or train.lr"
        )));
    }
    *table = probe;
    Ok(())
}

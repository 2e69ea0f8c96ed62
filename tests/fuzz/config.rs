//! Fuzz target for TOML files: `kiln train --config` run specs and `kiln sweep` files (the
//! `[sweep]` section, its search space, grid and random draws).

use std::time::Duration;

use kiln::cli::spec::RunSpec;
use kiln::sweep::SweepSection;
use kiln::sweep::space::{Distribution, Space};

use crate::data::clean;
use crate::engine::{Target, Verdict, mutate_bytes, text};

fn toml_exec(input: &[u8]) -> Verdict {
    let s = text(input);
    let mut any = false;
    match RunSpec::from_toml_str(&s, std::path::Path::new("fuzz.toml")) {
        Ok(spec) => match spec.train.validate() {
            Ok(()) => any = true,
            Err(e) => {
                clean(&e)?;
            }
        },
        Err(e) => {
            clean(&e)?;
        }
    }
    let Ok(mut table) = toml::from_str::<toml::Table>(&s) else {
        return Ok(any);
    };
    let Some(section) = table.remove("sweep") else {
        return Ok(any);
    };
    let section: SweepSection = match section.try_into() {
        Ok(s) => s,
        Err(e) => return clean(&e),
    };
    if let Err(e) = section.validate() {
        return clean(&e);
    }
    let space = match Space::parse(&section.space) {
        Ok(s) => s,
        Err(e) => return clean(&e),
    };
    match space.grid() {
        Ok(points) => {
            if points.iter().any(|p| p.len() != space.params.len()) {
                return Err("a grid point misses a hyperparameter".into());
            }
        }
        Err(e) => {
            clean(&e)?;
        }
    }
    for i in 0..3 {
        let p = space.sample(section.seed, i);
        if p.len() != space.params.len() {
            return Err("a random draw misses a hyperparameter".into());
        }
        // Continuous draws land inside their bounds (listed values are the user's, checked
        // when each trial's config is built).
        for (k, v) in &p {
            let inside = match (&space.params[k], v.as_float()) {
                (Distribution::Uniform(lo, hi), Some(x)) => *lo <= x && x <= *hi,
                (Distribution::LogUniform(lo, hi), Some(x)) => lo * 0.999 <= x && x <= hi * 1.001,
                (Distribution::Uniform(..) | Distribution::LogUniform(..), None) => false,
                _ => true,
            };
            if !inside {
                return Err(format!("draw {i} gave {k} = {v}, outside its range"));
            }
        }
    }
    Ok(true)
}

/// Run specs and sweep files.
pub fn toml() -> Target {
    Target {
        name: "toml",
        seeds: vec![
            b"model = \"mlp\"\nhidden = [32]\n[train]\nepochs = 2\nlr = 0.01\n".to_vec(),
            b"[train]\nepochs = 0\nbatch_size = 18446744073709551615\nlr = nan\n".to_vec(),
            b"[train]\nlr = inf\nmomentum = -1\naccumulate = 1000000000\n".to_vec(),
            b"unknown_key = 1\n".to_vec(),
            b"[sweep]\nmethod = \"grid\"\nmetric = \"val_loss\"\n[sweep.space]\nlr = [0.1, 0.01]\n\
              hidden = [[16], [32]]\n"
                .to_vec(),
            b"[sweep]\nmethod = \"random\"\ntrials = 4\n[sweep.space]\nlr = { log-uniform = \
              [1e-4, 0.1] }\nbatch_size = { int = [8, 64] }\ndropout = { uniform = [0.0, 0.5] }\n"
                .to_vec(),
            b"[sweep]\nmethod = \"random\"\n[sweep.space]\nlr = { uniform = [-1e308, 1e308] }\n"
                .to_vec(),
            b"[sweep]\nmethod = \"grid\"\n[sweep.space]\na = [1,2,3,4,5,6,7,8,9,10]\nb = \
              [1,2,3,4,5,6,7,8,9,10]\nc = [1,2,3,4,5,6,7,8,9,10]\nd = [1,2,3,4,5,6,7,8,9,10]\n\
              e = [1,2,3,4,5,6,7,8,9,10]\nf = [1,2,3,4,5,6,7,8,9,10]\ng = [1,2,3,4,5,6,7,8,9,10]\n"
                .to_vec(),
            b"[sweep]\nmethod = \"asha\"\nreduction = 0\nmin_epochs = 0\n[sweep.space]\n\
              lr = { int = [-9223372036854775808, 9223372036854775807] }\n"
                .to_vec(),
        ],
        dict: &[
            b"[train]\n",
            b"[sweep]\n",
            b"[sweep.space]\n",
            b" = ",
            b"\n",
            b"[",
            b"]",
            b"{ uniform = [",
            b"{ log-uniform = [",
            b"{ int = [",
            b"{ choice = [",
            b"method = \"grid\"\n",
            b"epochs",
            b"batch_size",
            b"\"",
        ],
        max_len: 4096,
        limit: Duration::from_secs(10),
        exec: toml_exec,
        mutate: mutate_bytes,
    }
}

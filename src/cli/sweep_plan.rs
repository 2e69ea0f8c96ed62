//! `kiln sweep`'s plan: the sweep file read and every trial's config built and checked
//! before anything runs, and the trials' state rebuilt from the journal for `--resume`.

use std::collections::BTreeMap;
use std::path::Path;

use super::spec::RunSpec;
use super::sweep::{St, Trial};
use super::{Error, Result};
use crate::sweep::asha::Rungs;
use crate::sweep::journal::Event;
use crate::sweep::space::{Params, Space, set_param};
use crate::sweep::{Method, Metric, SweepSection};

/// A parsed sweep: the base run, the section, the trials' values.
pub(crate) struct Plan {
    pub section: SweepSection,
    pub metric: Metric,
    pub space: Space,
    pub max_epochs: usize,
    pub rungs: Option<Rungs>,
    /// Every trial's values and config table.
    pub trials: Vec<(Params, toml::Table)>,
}

fn accepts(t: &toml::Table) -> bool {
    toml::Value::Table(t.clone()).try_into::<RunSpec>().is_ok()
}

/// Read and check a sweep file (every trial's config is built and checked before any runs).
pub(super) fn plan(text: &str, file: &Path) -> Result<Plan> {
    let mut base: toml::Table =
        toml::from_str(text).map_err(|e| Error(super::spec::toml_error(file, &e)))?;
    let section = base.remove("sweep").ok_or_else(|| {
        Error(format!(
            "{}: no [sweep] section (see `kiln sweep --help` and the README)",
            file.display()
        ))
    })?;
    let section: SweepSection = section
        .try_into()
        .map_err(|e| Error(format!("{}: [sweep]: {e}", file.display())))?;
    let metric = section.validate()?;
    let spec: RunSpec = toml::Value::Table(base.clone())
        .try_into()
        .map_err(|e| Error(format!("{}: {e}", file.display())))?;
    let space = Space::parse(&section.space)?;
    let max_epochs = section.max_epochs.unwrap_or(spec.train.epochs);
    let searches_epochs = space
        .params
        .keys()
        .any(|k| k == "epochs" || k == "train.epochs");
    let rungs = match section.method {
        Method::Asha => {
            if searches_epochs {
                return Err(Error(
                    "sweep.space.epochs: successive halving decides the epochs itself; search \
                     epochs with method = \"random\" or \"grid\""
                        .into(),
                ));
            }
            Some(Rungs::new(
                section.min_epochs,
                max_epochs,
                section.reduction,
            )?)
        }
        _ => None,
    };
    let points = match section.method {
        Method::Grid => space.grid()?,
        Method::Random | Method::Asha => (0..section.trials.unwrap_or(1))
            .map(|i| space.sample(section.seed, i))
            .collect(),
    };
    if points.is_empty() {
        return Err(Error("sweep.space: the grid is empty".into()));
    }
    let mut trials = Vec::with_capacity(points.len());
    for p in points {
        let mut t = base.clone();
        if !searches_epochs {
            set_param(
                &mut t,
                "epochs",
                toml::Value::Integer(max_epochs as i64),
                &accepts,
            )?;
        }
        for (k, v) in &p {
            set_param(&mut t, k, v.clone(), &accepts)?;
        }
        let s: RunSpec = toml::Value::Table(t.clone())
            .try_into()
            .map_err(|e| Error(format!("sweep: a trial's settings do not fit: {e}")))?;
        s.train.validate()?;
        trials.push((p, t));
    }
    Ok(Plan {
        section,
        metric,
        space,
        max_epochs,
        rungs,
        trials,
    })
}

/// Rebuild the trials' state from the journal (for `--resume`).
pub(super) fn replay(plan: &Plan, events: &[Event]) -> Result<Vec<Trial>> {
    let mut trials: Vec<Trial> = plan
        .trials
        .iter()
        .enumerate()
        .map(|(id, (p, _))| Trial {
            id,
            params: p.clone(),
            st: St::Waiting,
            rungs: BTreeMap::new(),
            end: None,
            seconds: 0.0,
            started: false,
        })
        .collect();
    let mut promoted: BTreeMap<usize, usize> = BTreeMap::new();
    for e in events {
        let id = match e {
            Event::Start { trial, .. }
            | Event::Rung { trial, .. }
            | Event::Promote { trial, .. }
            | Event::End { trial, .. } => *trial,
        };
        let Some(t) = trials.get_mut(id) else {
            return Err(Error(format!(
                "the journal names trial {id}, but the sweep file has {} trials: was the \
                 sweep file changed?",
                plan.trials.len()
            )));
        };
        match e {
            Event::Start { params, .. } => {
                if params != &t.params {
                    return Err(Error(format!(
                        "the journal's trial {id} had other values than the sweep file gives \
                         now: was the sweep file changed?"
                    )));
                }
                t.started = true;
            }
            Event::Rung { epoch, metric, .. } => {
                t.rungs.insert(*epoch, *metric);
            }
            Event::Promote { epoch, .. } => {
                promoted.insert(id, *epoch);
            }
            Event::End {
                state,
                metric,
                epochs,
                seconds,
                ..
            } => {
                t.end = Some((*state, *metric, *epochs, *seconds));
                t.st = St::Ended;
            }
        }
    }
    // A trial at a rung it was not yet let through waits for its decision again.
    for t in &mut trials {
        if t.end.is_none()
            && let Some((&r, _)) = t.rungs.iter().next_back()
            && promoted.get(&t.id) != Some(&r)
            && plan
                .rungs
                .as_ref()
                .is_some_and(|x| x.epochs.contains(&r) && r < plan.max_epochs)
        {
            t.st = St::Decide(r);
        }
    }
    Ok(trials)
}

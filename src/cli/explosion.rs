//! Stop a run whose loss explodes without becoming NaN.
//!
//! The trainer stops when the loss becomes NaN or infinite. A loss can also grow to 1e21 and
//! stay finite (Adam at `--lr 1e6`): the weights are then garbage, and a run that goes on
//! reports them as its result. [`Explosion`] compares every loss the loop reads back (every
//! [`BatchInfo::EVERY`] batches and each epoch's last, before that epoch's checkpoint) with
//! the first batch's loss of this process, `L0`:
//!
//! | loss                                | what happens                                      |
//! | ----------------------------------- | ------------------------------------------------- |
//! | `> WARN_FACTOR * max(L0, 1)` (1e4)  | one warning on stderr: the loss is exploding      |
//! | `> STOP_FACTOR * max(L0, 1)` (1e8)  | the run stops with an error, like a NaN loss      |
//!
//! `max(L0, 1)` keeps a tiny starting loss (a resumed, well-fitted run) from turning a normal
//! wobble into an "explosion". The run directory keeps the checkpoints written before.

use crate::Tensor;
use crate::error::{Error, Result};
use crate::train::hooks::{BatchInfo, Hook};

/// A loss this many times the first one (at least 1) is warned about.
pub const WARN_FACTOR: f64 = 1e4;
/// A loss this many times the first one (at least 1) stops the run.
pub const STOP_FACTOR: f64 = 1e8;

/// The hook; see the module notes.
#[derive(Debug, Default)]
pub struct Explosion {
    first: Option<f64>,
    warned: bool,
}

impl Hook for Explosion {
    fn before_backward(&mut self, loss: Tensor) -> Result<Tensor> {
        if self.first.is_none() {
            // One read-back in the whole run: the reference every later loss is compared with.
            self.first = Some(f64::from(loss.item()?));
        }
        Ok(loss)
    }

    fn on_batch(&mut self, info: &BatchInfo) -> Result<()> {
        let (Some(loss), Some(first)) = (info.loss.map(f64::from), self.first) else {
            return Ok(());
        };
        let base = first.abs().max(1.0);
        let at = format!("epoch {} batch {}", info.at.epoch, info.at.batch);
        if loss > STOP_FACTOR * base {
            return Err(Error::Diverged(format!(
                "the loss exploded to {loss:.3e} at {at}, more than {STOP_FACTOR:.0e} times the \
                 first batch's {first:.4}; training stopped. The run directory keeps the \
                 checkpoints written before (if any). Lower the learning rate (--lr) or add \
                 --clip-grad-norm"
            )));
        }
        if loss > WARN_FACTOR * base && !self.warned {
            self.warned = true;
            eprintln!(
                "warning: the loss is exploding: {loss:.3e} at {at}, more than {WARN_FACTOR:.0e} \
                 times the first batch's {first:.4}; the run stops past {STOP_FACTOR:.0e} times. \
                 Consider a lower --lr"
            );
        }
        Ok(())
    }
}

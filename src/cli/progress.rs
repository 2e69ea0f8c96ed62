//! What a person sees while a run trains: a progress bar per epoch (indicatif) and one line per
//! finished epoch, as a [`Hook`] on the trainer.

use indicatif::{ProgressBar, ProgressStyle};

use crate::nn::Module;
use crate::train::log::EpochRecord;
use crate::train::{BatchInfo, Control, EpochEnd, Hook};

/// How an epoch line reads for this kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// Tables and images: samples/s, "val acc".
    Samples,
    /// Language models (windows of `context` tokens): tokens/s, perplexity, "token acc".
    Tokens {
        /// Tokens per window.
        context: usize,
    },
}

/// The progress bar and epoch lines of `kiln train` / `kiln finetune`.
pub struct Progress {
    bar: Option<ProgressBar>,
    units: Units,
    epochs: usize,
}

impl Progress {
    /// A display for a run of `epochs` epochs.
    pub fn new(units: Units, epochs: usize) -> Progress {
        Progress {
            bar: None,
            units,
            epochs,
        }
    }

    fn rate(&self, examples: f64, seconds: f64) -> String {
        let per_sec = examples / seconds.max(1e-9);
        match self.units {
            Units::Samples => format!("{per_sec:.0} samples/s"),
            Units::Tokens { context } => format!("{:.0} tokens/s", per_sec * context as f64),
        }
    }

    fn line(&self, r: &EpochRecord) -> String {
        let text = matches!(self.units, Units::Tokens { .. });
        let mut line = format!(
            "epoch {:>3}/{}  train loss {:.4}",
            r.epoch, self.epochs, r.train_loss
        );
        if let Some(v) = r.val_loss {
            line += &format!("  val loss {v:.4}");
        }
        if let (true, Some(p)) = (text, r.val_perplexity) {
            line += &format!("  val ppl {p:.2}");
        }
        if let Some(acc) = r.val_accuracy {
            let what = if text { "token acc" } else { "val acc" };
            line += &format!("  {what} {:.1}%", 100.0 * acc);
        }
        if let Some(r2) = r.val_r2 {
            line += &format!("  val R2 {r2:.3}");
        }
        let examples = r.samples_per_sec * r.seconds;
        line += &format!("  {:.2}s ({})", r.seconds, self.rate(examples, r.seconds));
        if let Some(b) = r.partial_batches {
            line += &format!("  [stopped after batch {b}]");
        }
        line
    }
}

impl Hook for Progress {
    fn on_epoch_start(&mut self, epoch: usize, first: usize, batches: usize) -> crate::Result<()> {
        let bar = ProgressBar::new(batches as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{}", self.epochs));
        bar.set_position(first as u64);
        self.bar = Some(bar);
        Ok(())
    }

    fn on_batch(&mut self, info: &BatchInfo) -> crate::Result<()> {
        let msg = info.loss.map(|l| {
            format!(
                "loss {l:.4}  {}",
                self.rate(info.examples as f64, info.seconds)
            )
        });
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if let Some(m) = msg {
                bar.set_message(m);
            }
        }
        Ok(())
    }

    fn end_of_epoch(
        &mut self,
        r: &EpochRecord,
        _: &EpochEnd,
        _: &dyn Module,
    ) -> crate::Result<Control> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("{}", self.line(r));
        Ok(Control::Continue)
    }

    fn on_partial_epoch(&mut self, r: &EpochRecord, _: &dyn Module) -> crate::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("{}", self.line(r));
        Ok(())
    }
}

//! The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's `lr_find`):
//! train from the initial weights while the learning rate grows exponentially, one step at a
//! time, and watch the loss.
//!
//! ```text
//! lr_t      = start * (end / start)^(t / steps)          t = 0 .. steps-1 (Schedule::Exponential)
//! avg_t     = beta avg_{t-1} + (1 - beta) loss_t         beta = 0.98, avg_{-1} = 0
//! smooth_t  = avg_t / (1 - beta^(t+1))                   bias-corrected
//! stop when smooth_t > STOP_FACTOR * min smooth, or the loss is not finite
//! ```
//!
//! The suggestion is the rate at the smoothed loss's minimum divided by 10
//! ([`RangeTest::suggestion`]): past the minimum the loss is already blowing up, one decade below it still
//! falls fast. The steepest descent of the smoothed loss (most negative d smooth / d log10 lr
//! before the minimum) is reported beside it.
//!
//! It runs on the one training loop: [`super::Trainer`] with the exponential schedule
//! ([`super::Trainer::schedule`]) and this hook, which reads the loss back once per step.

use serde::Serialize;

use super::hooks::{Control, Hook, StepInfo};
use crate::error::Result;
use crate::nn::Module;
use crate::optim::Schedule;
use crate::tensor::Tensor;

/// Smoothing factor of the loss.
pub const BETA: f64 = 0.98;
/// The test stops when the smoothed loss exceeds this many times its minimum.
pub const STOP_FACTOR: f64 = 4.0;

/// One step of the test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// 1-based step.
    pub step: u64,
    /// Learning rate of the step.
    pub lr: f64,
    /// The step's loss.
    pub loss: f64,
    /// Bias-corrected exponential average of the losses so far.
    pub smoothed: f64,
}

/// The range-test hook; see the module notes.
#[derive(Debug, Clone)]
pub struct RangeTest {
    /// First learning rate.
    pub start: f64,
    /// Last learning rate (at `steps`).
    pub end: f64,
    /// Steps of the sweep.
    pub steps: u64,
    /// What was measured.
    pub points: Vec<Point>,
    loss: Option<Tensor>,
    avg: f64,
}

impl RangeTest {
    /// A sweep from `start` to `end` over `steps` steps.
    pub fn new(start: f64, end: f64, steps: u64) -> RangeTest {
        RangeTest {
            start,
            end,
            steps: steps.max(2),
            points: Vec::new(),
            loss: None,
            avg: 0.0,
        }
    }

    /// The trainer's schedule for this sweep, with base rate `start`.
    pub fn schedule(&self) -> Schedule {
        Schedule::Exponential {
            gamma: (self.end / self.start).powf(1.0 / self.steps as f64) as f32,
        }
    }

    /// The learning rate of 0-based step `t`.
    pub fn lr_at(&self, t: u64) -> f64 {
        self.schedule().lr_at(self.start as f32, t) as f64
    }

    /// Index of the minimum smoothed loss (finite points only).
    fn min_index(&self) -> Option<usize> {
        (0..self.points.len())
            .filter(|&i| self.points[i].smoothed.is_finite())
            .min_by(|&a, &b| self.points[a].smoothed.total_cmp(&self.points[b].smoothed))
    }

    /// The suggested rate: the minimum of the smoothed loss / 10 (none before 3 points).
    pub fn suggestion(&self) -> Option<f64> {
        (self.points.len() >= 3)
            .then(|| self.min_index())
            .flatten()
            .map(|i| self.points[i].lr / 10.0)
    }

    /// The rate of steepest descent of the smoothed loss before its minimum.
    pub fn steepest(&self) -> Option<f64> {
        let m = self.min_index()?;
        (1..m)
            .map(|i| {
                let (a, b) = (&self.points[i - 1], &self.points[i + 1]);
                (i, (b.smoothed - a.smoothed) / (b.lr.log10() - a.lr.log10()))
            })
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .map(|(i, _)| self.points[i].lr)
    }

    /// The points as CSV: `step,lr,loss,smoothed_loss`.
    pub fn csv(&self) -> String {
        let mut s = String::from("step,lr,loss,smoothed_loss\n");
        for p in &self.points {
            s += &format!("{},{:e},{},{}\n", p.step, p.lr, p.loss, p.smoothed);
        }
        s
    }
}

impl Hook for RangeTest {
    fn before_backward(&mut self, loss: Tensor) -> Result<Tensor> {
        self.loss = Some(loss.detach());
        Ok(loss)
    }

    fn after_step(&mut self, info: &StepInfo, _model: &dyn Module) -> Result<Control> {
        let Some(l) = self.loss.take() else {
            return Ok(Control::Continue);
        };
        let loss = l.item()? as f64; // one read-back per step: the test is about the loss
        let k = self.points.len() as i32 + 1;
        self.avg = BETA * self.avg + (1.0 - BETA) * loss;
        let smoothed = self.avg / (1.0 - BETA.powi(k));
        self.points.push(Point {
            step: info.step,
            lr: self.lr_at(info.step - 1),
            loss,
            smoothed,
        });
        let best = self
            .points
            .iter()
            .map(|p| p.smoothed)
            .fold(f64::INFINITY, f64::min);
        let exploded = !loss.is_finite() || smoothed > STOP_FACTOR * best;
        Ok(if exploded || info.step >= self.steps {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_losses(losses: &[f64]) -> RangeTest {
        let mut r = RangeTest::new(1e-4, 1.0, losses.len() as u64);
        for (i, &l) in losses.iter().enumerate() {
            r.points.push(Point {
                step: i as u64 + 1,
                lr: r.lr_at(i as u64),
                loss: l,
                smoothed: l,
            });
        }
        r
    }

    #[test]
    fn suggestion_is_a_tenth_of_the_minimum_and_steepest_lies_before_it() {
        // lr 1e-4, 1e-3, 1e-2, 1e-1 over 4 steps; the minimum at 1e-2 (index 2).
        let r = with_losses(&[2.0, 1.0, 0.5, 3.0]);
        let s = r.suggestion().unwrap();
        assert!((s - 1e-3).abs() < 1e-6, "{s}");
        assert!((r.steepest().unwrap() - 1e-3).abs() < 1e-6);
        assert_eq!(r.csv().lines().count(), 5);
    }

    #[test]
    fn the_schedule_sweeps_start_to_end() {
        let r = RangeTest::new(1e-7, 10.0, 100);
        assert!((r.lr_at(0) - 1e-7).abs() < 1e-12);
        assert!((r.lr_at(100) / 10.0 - 1.0).abs() < 1e-3);
        assert!((r.lr_at(50) / 1e-3 - 1.0).abs() < 1e-3);
    }
}

//! Early stopping on a monitored validation metric, with Lightning's semantics: an epoch
//! improves when the metric beats the best so far by more than `min_delta` in the configured
//! direction; training stops after `patience` epochs without improvement.

use defectkit_core::config::schema::{EarlyStoppingConfig, MonitorMode};

/// What the trainer should do after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The metric improved: a new best (save the best checkpoint).
    Improved,
    /// No improvement, patience not yet exhausted.
    Wait,
    /// No improvement for `patience` epochs: stop.
    Stop,
}

/// Tracks the best value of one metric and the epochs since it last improved.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStopping {
    cfg: EarlyStoppingConfig,
    best: Option<f64>,
    best_epoch: Option<usize>,
    wait: usize,
}

impl EarlyStopping {
    /// A fresh tracker.
    pub fn new(cfg: EarlyStoppingConfig) -> Self {
        Self {
            cfg,
            best: None,
            best_epoch: None,
            wait: 0,
        }
    }

    /// Restore state when resuming a run.
    pub fn restore(
        cfg: EarlyStoppingConfig,
        best: Option<f64>,
        best_epoch: Option<usize>,
        wait: usize,
    ) -> Self {
        Self {
            cfg,
            best,
            best_epoch,
            wait,
        }
    }

    /// The metric name being monitored (e.g. `val/loss`).
    pub fn monitor(&self) -> &str {
        &self.cfg.monitor
    }

    /// Best value so far.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Epoch of the best value.
    pub fn best_epoch(&self) -> Option<usize> {
        self.best_epoch
    }

    /// Epochs since the last improvement.
    pub fn wait(&self) -> usize {
        self.wait
    }

    fn improves(&self, value: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        match (self.best, self.cfg.mode) {
            (None, _) => true,
            (Some(b), MonitorMode::Min) => value < b - self.cfg.min_delta,
            (Some(b), MonitorMode::Max) => value > b + self.cfg.min_delta,
        }
    }

    /// Record the metric of `epoch` and decide.
    pub fn update(&mut self, epoch: usize, value: f64) -> Verdict {
        if self.improves(value) {
            self.best = Some(value);
            self.best_epoch = Some(epoch);
            self.wait = 0;
            return Verdict::Improved;
        }
        self.wait += 1;
        if self.wait >= self.cfg.patience.max(1) {
            Verdict::Stop
        } else {
            Verdict::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es(mode: MonitorMode, patience: usize, min_delta: f64) -> EarlyStopping {
        EarlyStopping::new(EarlyStoppingConfig {
            monitor: "val/loss".into(),
            mode,
            patience,
            min_delta,
        })
    }

    #[test]
    fn stops_after_patience_epochs_on_a_plateau() {
        let mut e = es(MonitorMode::Min, 2, 0.0);
        assert_eq!(e.update(0, 1.0), Verdict::Improved);
        assert_eq!(e.update(1, 0.5), Verdict::Improved);
        assert_eq!(e.update(2, 0.5), Verdict::Wait);
        assert_eq!(e.update(3, 0.6), Verdict::Stop);
        assert_eq!((e.best(), e.best_epoch()), (Some(0.5), Some(1)));
    }

    #[test]
    fn min_delta_and_max_mode() {
        let mut e = es(MonitorMode::Max, 3, 0.1);
        assert_eq!(e.update(0, 0.5), Verdict::Improved);
        assert_eq!(
            e.update(1, 0.55),
            Verdict::Wait,
            "within min_delta is no improvement"
        );
        assert_eq!(e.update(2, 0.7), Verdict::Improved);
        assert_eq!(e.wait(), 0);
    }

    #[test]
    fn non_finite_values_never_improve() {
        let mut e = es(MonitorMode::Min, 1, 0.0);
        assert_eq!(e.update(0, f64::NAN), Verdict::Stop);
        assert_eq!(e.best(), None);
    }
}

//! The one interrupt policy of every long verb: the first Ctrl-C asks the work to stop at
//! its next safe point (after a batch, an image, an epoch); the work then removes its own
//! temporary files, keeps every completed output and returns an "interrupted" error, which
//! the CLI turns into exit status 130. A second Ctrl-C ends the process at once.
//!
//! The flag is process-wide on purpose: a signal is too. Library code polls
//! [`stop_requested`]; only the CLI calls [`request_stop`].

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Ask running work to stop at its next safe point (the CLI's Ctrl-C handler).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

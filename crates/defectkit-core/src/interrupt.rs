//! The one interrupt policy of every long verb: the first Ctrl-C asks the work to stop at
//! its next safe point (after a batch, an image, an epoch); the work then removes its own
//! temporary files, keeps every completed output and returns an "interrupted" error, which
//! the CLI turns into exit status 130. A second Ctrl-C ends the process at once.
//!
//! The flag is process-wide on purpose: a signal is too. Library code polls
//! [`stop_requested`] or takes the flag itself ([`flag`]) where its API has a `cancel`
//! parameter (tests pass their own); only the CLI calls [`request_stop`] and
//! [`exit_interrupted`].

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

/// The process-wide flag itself, for library functions that take a `cancel: &AtomicBool`.
pub fn flag() -> &'static AtomicBool {
    &STOP
}

/// Ends the process at once with status 130 (a second Ctrl-C), first removing the
/// temporary files and folders this process is writing ([`crate::fsutil::TempGuard`]), so
/// that even an impatient stop leaves nothing behind.
pub fn exit_interrupted() -> ! {
    crate::fsutil::remove_own_temps();
    std::process::exit(130)
}

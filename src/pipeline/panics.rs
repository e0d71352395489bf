//! Panics that say nothing about items.
//!
//! A panic's message can hold item text (a failed slice quotes the string, an `expect` formats
//! a value), so lai never prints, logs or records one. `guard` runs a stage call and turns a
//! panic into the place it happened; while it runs, the panic hook records that place and
//! prints nothing (the runtime reports the item's failure itself). `withhold_messages` sets the
//! binary's hook for every other panic: the thread and place on stderr, never the message.
//! Nothing here may format a panic's payload.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a call under `guard`.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic under `guard` on this thread happened ("src/x.rs:10:5").
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic caught by `guard`: where it happened, never what it said.
#[derive(Debug)]
pub struct Caught {
    pub location: Option<String>,
}

/// Runs `call`, catching a panic in it. The panic's message is dropped unread.
pub fn guard<R>(call: impl FnOnce() -> R) -> Result<R, Caught> {
    record_guarded_panics();
    LOCATION.take();
    // Guards nest (a document reader's inside the input reader's): the outer one stays armed.
    let outer = GUARDED.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(call));
    GUARDED.set(outer);
    result.map_err(|_payload| Caught {
        location: LOCATION.take(),
    })
}

/// Wraps the process's panic hook once: panics under `guard` only record where they happened;
/// any other panic goes to the hook that was there before.
fn record_guarded_panics() {
    static WRAPPED: Once = Once::new();
    WRAPPED.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.get() {
                LOCATION.set(info.location().map(|l| l.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// The `lai` binary's panic hook: a panic prints its thread and place (and a backtrace when
/// `RUST_BACKTRACE` asks for one), but never its message. Call it first thing in `main`.
pub fn withhold_messages() {
    panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let at = info
            .location()
            .map_or_else(|| "an unknown place".to_string(), |l| l.to_string());
        eprintln!(
            "error: thread '{}' panicked at {at}; this is a bug in lai, please report it (the panic message is not shown: it may hold item content)",
            thread.name().unwrap_or("<unnamed>")
        );
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            eprintln!("{backtrace}");
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    // A guarded panic becomes its place in the source; its message is nowhere in the result.
    #[test]
    fn guard_keeps_the_place_not_the_message() {
        let caught = guard(|| -> u32 { panic!("secret item text") }).unwrap_err();
        assert!(!format!("{caught:?}").contains("secret"));
        let location = caught.location.expect("the hook records the place");
        assert!(
            location.starts_with("src/pipeline/panics.rs:"),
            "{location}"
        );
        assert_eq!(guard(|| 7).unwrap(), 7);
    }
}

//! What every stage shares: the options each stage's table starts with, and a model loaded once
//! and shared by a stage's workers.

use std::sync::{Mutex, OnceLock};

use crate::options::{Default, OptionSpec, Ty, opt};

/// Options every stage has; each stage's spec starts with these, with its own defaults.
pub const fn batch_size(default: &'static str) -> OptionSpec {
    opt(
        "batch_size",
        Ty::Int {
            min: 1,
            max: 1_000_000,
        },
        Default::Value(default),
        "Most items a worker takes at once.",
    )
    .speed()
}

pub const MAX_WAIT: OptionSpec = max_wait("\"20ms\"");

/// How long a partial batch waits, with a stage's own default.
pub const fn max_wait(default: &'static str) -> OptionSpec {
    opt(
        "max_wait",
        Ty::Duration,
        Default::Value(default),
        "Longest a partial batch waits for more items before it is processed.",
    )
    .speed()
}

pub const TIMEOUT: OptionSpec = opt(
    "timeout",
    Ty::Duration,
    Default::Unset,
    "Longest one item may take in this stage (a batch of n items gets n times it); past it the item fails with a timeout instead of hanging the run. Unset: no limit.",
).speed();

pub const WORKERS: OptionSpec = workers("0");

/// Worker threads of a stage; `"0"` means one per `--jobs`.
pub const fn workers(default: &'static str) -> OptionSpec {
    opt(
        "workers",
        Ty::Int { min: 0, max: 1024 },
        Default::Value(default),
        "Worker threads for this stage; 0 means one per `--jobs`.",
    )
    .speed()
}

/// An engine model, loaded by the first worker that starts and shared by all of them for the
/// stage's lifetime (a load that fails is tried again by the next worker, which reports it too).
pub struct Shared<T> {
    value: OnceLock<T>,
    loading: Mutex<()>,
}

impl<T> std::default::Default for Shared<T> {
    fn default() -> Self {
        Shared {
            value: OnceLock::new(),
            loading: Mutex::new(()),
        }
    }
}

impl<T> Shared<T> {
    pub fn get(&self, load: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<&T> {
        let _loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(value) = self.value.get() {
            return Ok(value);
        }
        let value = load()?;
        Ok(self.value.get_or_init(|| value))
    }
}

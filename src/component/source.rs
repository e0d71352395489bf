//! What a source is: it runs on its own thread and hands items to `emit` one at a time, in a
//! deterministic order; `emit` blocks while the pipeline is full (backpressure) and returns false
//! when the run is stopping. A problem with one input (unreadable file, malformed line) becomes a
//! failed item, never an error of the whole source; only an I/O failure of the stream itself
//! (stdin breaks) ends the source with an error.
//!
//! Every source keeps the run's inputs apart from its outputs (`Fence`) and gives each id to
//! one item only.

use super::fence::Input;
use crate::item::Item;

/// Which item ids a run takes (a shard's): the others are passed over, files among them unread.
pub type Wanted<'a> = &'a dyn Fn(&str) -> bool;

pub trait Source: Send + Sync {
    /// Reads every input in order, calling `emit` per item that `wanted` takes; stops early
    /// when `emit` says so.
    fn read(
        &self,
        inputs: &[Input],
        wanted: Wanted,
        emit: &mut dyn FnMut(Item) -> bool,
    ) -> anyhow::Result<()>;

    /// How many items `read` will produce, when that is cheap to know (for progress ETA).
    fn count(&self, _inputs: &[Input]) -> Option<u64> {
        None
    }
}

//! What the runtime asks of sources, stages and sinks, and what it gives them: the contracts
//! every component kind implements (`Source`, `Stage` and `Worker`, `SinkSpec` and `Sink`), and
//! the types they share with the runtime (the start context, the deadline of a batch, the meter
//! of a stage's own units, the thread budget, the input fence, where a record went).
//!
//! Components and the runtime both build on this module; neither reaches into the other.

pub mod fence;
mod sink;
mod source;
mod stage;
pub mod threads;

pub use fence::{Fence, Input};
pub use sink::{
    Committed, OpenContext, Place, Repair, Sink, SinkSpec, create_parent, is_item_error,
    item_error, resolve,
};
pub use source::{Source, Wanted};
pub use stage::{Deadline, Egress, Meter, Per, Stage, StageCounters, StartContext, Unit, Worker};

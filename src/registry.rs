//! Every component kind lai knows, by kind: the only place that names them all. `lai stages`,
//! `lai check` and pipeline files learn about a kind from these slices, so adding a stage, a
//! source or an output is one new file and one line here.

use crate::component::Stage;
use crate::options::ComponentKind;
use crate::stages;

/// Every stage kind, in the order `lai stages` lists them.
pub static STAGES: &[ComponentKind<dyn Stage>] = &[
    stages::transcribe::KIND,
    stages::llm::KIND,
    stages::embed::KIND,
    stages::classify::KIND,
    stages::redact::KIND,
];

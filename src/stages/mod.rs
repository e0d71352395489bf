//! Stage kinds, one file (or folder) each, and the registry slice `STAGES` that names them.
//!
//! Adding a stage is one new file and its name in the `stages!` list below (see the README's
//! "Adding a stage"); `lai stages`, `lai check` and pipeline files learn about it from `STAGES`.
//! What every stage fulfils is `component::Stage`; `common` holds what stages share, and
//! `encoder` the ONNX text encoder of embed, classify and redact.

pub mod common;
pub mod encoder;

use crate::component::Stage;
use crate::options::ComponentKind;

/// Declares each stage's module and lists its `KIND` in `STAGES`, in the order given.
macro_rules! stages {
    ($($name:ident),* $(,)?) => {
        $(pub mod $name;)*

        /// Every stage kind, in the order `lai stages` lists them.
        pub static STAGES: &[ComponentKind<dyn Stage>] = &[$($name::KIND),*];
    };
}

stages![transcribe, llm, embed, classify, redact];

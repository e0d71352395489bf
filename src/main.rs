//! lai: run local AI batch pipelines.
//!
//! # Layout
//! Dependencies run one way, from the top of this list to the bottom; no module imports one
//! above it, and there is no import circle.
//!
//! 1. Top: `main`, `cli` (command-line syntax), `app` (turns a command into work and an exit
//!    code), `config` (pipeline files: parse, validate every key with locations, build the
//!    components).
//! 2. Components, one file per kind, each folder's `mod.rs` listing its kinds in a registry slice
//!    (`SOURCES`, `STAGES`, `SINKS`) above the files: `sources` (where items come from), `stages`
//!    (what is done to them), `sinks` (where they go).
//! 3. The runtime: `pipeline` (bounded channel graph, batching, workers, writer, report,
//!    progress) and `ledger` (resume, crash repair, sharding, merge, `lai ledger` views).
//!    Beside it, `engines` (whisper.cpp, llama.cpp, ONNX Runtime) and `audio` (decoding to
//!    16 kHz mono).
//! 4. Contracts: `component`, what the runtime asks of sources, stages and sinks and what it
//!    gives them (start context, deadline, meter, thread budget, input fence, record places).
//! 5. Ground floor: `item` (the item, provenance, printable text), `options` (option specs,
//!    `ComponentKind`, diagnostics), `device` (CPU or GPU), `models` (the catalog, the models
//!    directory, verification and downloads), `confine` (Landlock and seccomp: what a started
//!    run may still read, write and connect to).

/// `eprintln!` that never panics: with stderr closed (`lai run ... 2>&1 | head`) the message is
/// lost and the run goes on, instead of a panic (exit 101) in the middle of writing outputs.
macro_rules! stderr_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics: a reader that went away (`lai models list | head -1`) ends
/// the command quietly with 141, as a shell's SIGPIPE would, instead of a panic (exit 101).
macro_rules! stdout_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(crate::app::Exit::ReaderGone as i32);
            }
        }
    }};
}

mod app;
mod audio;
mod cli;
mod component;
mod config;
mod confine;
mod device;
mod engines;
mod item;
mod ledger;
mod models;
mod options;
mod pipeline;
mod sinks;
mod sources;
mod stages;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A panic's message may hold item text: print where it happened, never what it said.
    pipeline::panics::withhold_messages();
    let cli = cli::Cli::parse();
    match app::main(cli) {
        Ok(code) => code,
        Err(e) => {
            stderr_line!("error: {e:#}");
            app::Exit::Fatal.into()
        }
    }
}

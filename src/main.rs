//! lai: run local AI batch pipelines.
//!
//! # Layout
//! - `cli`: command-line syntax; `app`: turns a command into work and an exit code.
//! - `audio`: decoding audio and video files to 16 kHz mono chunks (symphonia, rubato).
//! - `config`: pipeline files: parse, validate every key with locations, build components.
//! - `ledger`: the run ledger in the output folder (resume, crash repair, sharding, merge).
//! - `models`: the model catalog, the models directory, verification and downloads.
//! - `pipeline`: the runtime (bounded channel graph, batching, workers, writer, report, progress).
//! - `sources`, `stages`, `sinks`: one file per component kind, each listed in a registry slice.

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
                std::process::exit(141);
            }
        }
    }};
}

mod app;
mod audio;
mod cli;
mod component;
mod config;
mod device;
mod engines;
mod item;
mod ledger;
mod models;
mod options;
mod pipeline;
mod registry;
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

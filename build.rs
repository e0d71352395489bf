//! Link settings for the native engines.
//!
//! whisper.cpp is linked statically and llama.cpp (later) as a shared library, each with its
//! own ggml. `--exclude-libs,ALL` keeps the static ggml symbols private to the binary so a
//! shared libllama cannot bind to them (it would link, then abort at run time; see DESIGN.md).
//! `rustc-link-arg` also applies to test binaries.

fn main() {
    println!("cargo:rustc-link-arg=-Wl,--exclude-libs,ALL");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
}

//! Link settings for the native engines.
//!
//! whisper.cpp is linked statically and llama.cpp as shared libraries, each with its own ggml.
//! `--exclude-libs,ALL` keeps the static ggml symbols private to the binary so libllama cannot
//! bind to them (it would link, then abort at run time; see DESIGN.md). `rustc-link-arg` also
//! applies to test binaries.
//!
//! The binary looks for libllama/libggml next to itself (`$ORIGIN`), then in llama-cpp-sys-2's
//! build output. llama-cpp-sys-2 links only the unversioned `libX.so` symlinks into the target
//! folder; they dangle there (their `libX.so.0` targets are not copied), so lai links the
//! versioned files too. That makes `$ORIGIN` work for a copied binary, and it keeps a second run
//! of llama-cpp-sys-2's build script (clippy and test builds hash it differently) from failing on
//! the dangling links it cannot see.

use std::path::Path;

fn main() {
    println!("cargo:rustc-link-arg=-Wl,--exclude-libs,ALL");
    // DT_RPATH rather than DT_RUNPATH: a runpath serves only the binary's own dependencies, and
    // libllama's own dependency libggml would not be found.
    println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    // The CUDA build finds cudart and cuBLAS in the toolkit it was built with (never its stubs:
    // the driver's libcuda comes from the system).
    println!("cargo:rerun-if-env-changed=CUDA_PATH");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some()
        && let Ok(cuda) = std::env::var("CUDA_PATH")
    {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{cuda}/lib");
    }
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_GGML_CMAKE_DIR");
    let cmake_dir = std::env::var("DEP_LLAMA_GGML_CMAKE_DIR").unwrap_or_default();
    let Some(lib_dir) = Path::new(&cmake_dir).parent().filter(|d| d.is_dir()) else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    let out_dir = std::env::var("OUT_DIR").unwrap_or_default();
    // OUT_DIR is target/<profile>/build/lai-<hash>/out.
    let Some(target_dir) = Path::new(&out_dir).ancestors().nth(3) else {
        return;
    };
    for dir in [
        target_dir.to_path_buf(),
        target_dir.join("deps"),
        target_dir.join("examples"),
    ] {
        if dir.is_dir() {
            link_shared_libs(lib_dir, &dir);
        }
    }
}

/// Makes every `lib*.so*` of `lib_dir` resolvable in `dir`, as hard links to the real files.
fn link_shared_libs(lib_dir: &Path, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(lib_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name_str) = name.to_str() else {
            continue;
        };
        if !name_str.starts_with("lib") || !name_str.contains(".so") {
            continue;
        }
        let dst = dir.join(&name);
        if dst.exists() {
            continue;
        }
        // A dangling symlink left by an earlier build: replace it.
        let _ = std::fs::remove_file(&dst);
        if let Ok(real) = entry.path().canonicalize()
            && std::fs::hard_link(&real, &dst).is_err()
        {
            let _ = std::fs::copy(&real, &dst);
        }
    }
}

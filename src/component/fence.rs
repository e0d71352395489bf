//! Keeps a run's inputs and outputs apart.
//!
//! Before anything is opened, an input that is one of the run's outputs, or lies inside one
//! (the output folder, a per-item output folder), is refused: reading it would feed lai its
//! own results, and writing it would destroy the input. An input folder that *contains* the
//! outputs (the default `lai-out` inside `.`) is allowed; its walk passes over them, matched by
//! device and inode so no spelling of a path (`./x`, a symlink) lets them back in.
//! This module must not open any file.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;

use crate::item::printable;

/// One command-line input.
#[derive(Clone, Debug)]
pub enum Input {
    /// `-`: JSONL records on standard input.
    Stdin,
    /// A file or folder, with the run's outputs that reading it must pass over.
    Path(PathBuf, Arc<Fence>),
}

/// A file's identity on this machine: (device, inode).
pub type FileKey = (u64, u64);

/// The paths a run writes (its output folder, files and per-item folders), absolute and with
/// symlinks resolved as far as they exist: what its inputs must stay clear of.
#[derive(Debug, Default)]
pub struct Fence {
    paths: Vec<PathBuf>,
}

impl Fence {
    /// No outputs to keep clear of (a filter run writes only to stdout).
    pub fn none() -> Arc<Fence> {
        Arc::new(Fence::default())
    }

    pub fn new(paths: impl IntoIterator<Item = PathBuf>) -> Fence {
        Fence {
            paths: paths.into_iter().map(|p| resolved(&p)).collect(),
        }
    }

    /// Refuses any path input that is an output or lies inside one, then hands every path
    /// input these outputs so its walk can pass over them.
    ///
    /// # Errors
    /// Names the input and the output it meets, and says what to do.
    pub fn apply(self, inputs: Vec<Input>) -> anyhow::Result<Vec<Input>> {
        let existing = self.existing();
        for input in &inputs {
            let Input::Path(path, _) = input else {
                continue;
            };
            let real = resolved(path);
            let same_file = std::fs::metadata(path).is_ok_and(|m| existing.contains(&key(&m)));
            // The closest output names the problem best: the file itself, not its folder.
            let met = self
                .paths
                .iter()
                .filter(|o| real.starts_with(o))
                .max_by_key(|o| o.components().count());
            if let Some(output) = met {
                let how = if real == *output {
                    "is also an output of this run"
                } else {
                    "lies inside an output of this run"
                };
                bail!(
                    "input {} {how} ({}); nothing was read or written. Give another output folder with -o, or move the input out of it",
                    printable(&path.display().to_string()),
                    printable(&output.display().to_string())
                );
            }
            if same_file {
                bail!(
                    "input {} is the same file as an output of this run (a hard link); nothing was read or written. Give another output folder with -o",
                    printable(&path.display().to_string())
                );
            }
        }
        let fence = Arc::new(self);
        Ok(inputs
            .into_iter()
            .map(|input| match input {
                Input::Path(path, _) => Input::Path(path, Arc::clone(&fence)),
                Input::Stdin => Input::Stdin,
            })
            .collect())
    }

    /// The identities of the outputs that exist now, for a walk to pass over.
    pub fn existing(&self) -> HashSet<FileKey> {
        self.paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| key(&m))
            .collect()
    }
}

pub fn key(meta: &std::fs::Metadata) -> FileKey {
    (meta.dev(), meta.ino())
}

/// `path` made absolute with symlinks resolved: its longest existing ancestor is canonicalized
/// and the rest (which does not exist yet) appended, `..` taken lexically.
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut base = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(base) {
            let mut out = real;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(name) => out.push(name),
                    _ => {}
                }
            }
            return out;
        }
        match (base.parent(), base.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                base = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A path that does not exist yet resolves through its existing ancestor, symlinks and all.
    #[test]
    fn resolves_paths_that_do_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::os::unix::fs::symlink(&real, real.join("link")).unwrap();
        assert_eq!(
            resolved(&real.join("link/out/../out/a.jsonl")),
            real.join("out/a.jsonl")
        );
    }
}

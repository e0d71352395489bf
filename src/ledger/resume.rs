//! Resume: a run's output folder opened for work (locked, repaired after a crash, its earlier
//! results known), and the policy that decides at intake what happens to each item.
//!
//! An item is done again when its input bytes, the pipeline's configuration or a model file
//! changed (the resume key); an unchanged item is skipped; a failed one is retried only under
//! `--retry-failed`; a renamed file whose bytes were done under a name that is gone is recorded
//! as the same result instead of being processed again.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Ledger, Priors, RunEnd, RunRow};
use crate::component::{Committed, Repair};
use crate::item::{Item, sha256_hex};
use crate::models::ResolvedModel;

/// What intake does with an item.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Admit {
    Process,
    /// Not processed (already done, say); counted as read and skipped.
    Skip,
}

/// The resume key: what the pipeline does (its canonical configuration) and with which exact
/// model files.
pub fn key(config: &str, models: &[ResolvedModel]) -> String {
    let files: Vec<String> = models
        .iter()
        .flat_map(|m| {
            // How an encoder's output is read (window, pooling, normalization) changes its
            // results as much as its weights do, wherever it was found: catalog or hint files.
            let encoder = m.encoder.as_ref().map(|e| {
                format!(
                    "model {} encoder {}",
                    m.name,
                    serde_json::to_string(e).unwrap_or_default()
                )
            });
            m.files
                .iter()
                .map(move |f| format!("model {} {}", m.name, f.sha256))
                .chain(encoder)
        })
        .collect();
    sha256_hex(format!("{config}\n{}", files.join("\n")).as_bytes())
}

/// An output folder held by this run: its lock, its ledger, and what earlier runs left.
pub struct Folder {
    _lock: File,
    pub ledger: Ledger,
    /// Files earlier runs appended to, with the length and header length the ledger committed.
    pub resume: HashMap<PathBuf, Committed>,
    /// Bytes of unfinished records cut off after an interrupted run.
    pub cut: u64,
    policy: Policy,
}

impl Folder {
    /// Locks, repairs and opens `out_dir` for the run `row`; `None` when another run holds it.
    /// `fresh` forgets every earlier result; `retry_failed` takes only earlier failures.
    pub fn open(
        out_dir: &Path,
        repairs: &'static [Repair],
        row: &RunRow,
        fresh: bool,
        retry_failed: bool,
    ) -> anyhow::Result<Option<Folder>> {
        let Some(lock) = super::lock(out_dir)? else {
            return Ok(None);
        };
        let mut ledger = Ledger::open(out_dir, repairs)?;
        let cut = ledger.repair()?;
        ledger.begin_run(row)?;
        if fresh {
            ledger.forget_all()?;
        }
        ledger.compact()?;
        let resume = ledger.resume()?;
        let policy = Policy {
            priors: ledger.priors()?,
            config_sha256: row.config_sha256.to_string(),
            retry_failed,
            ..Policy::default()
        };
        Ok(Some(Folder {
            _lock: lock,
            ledger,
            resume,
            cut,
            policy,
        }))
    }

    /// The ledger for the runtime to commit to, and the policy for its intake.
    pub fn split(&mut self) -> (&mut Ledger, &Policy) {
        (&mut self.ledger, &self.policy)
    }

    /// Items skipped because they failed in an earlier run (still failures of the folder).
    pub fn failed_before(&self) -> u64 {
        self.policy.skipped_failed.load(Ordering::Relaxed)
    }

    /// Ends the run in the ledger: renamed copies recorded, everything committed, records of
    /// items processed again dropped from the files. Returns how many items of this run had
    /// the id of an earlier item of it.
    pub fn finish(mut self, end: &RunEnd) -> anyhow::Result<u64> {
        let same_as = std::mem::take(
            &mut *self
                .policy
                .same_as
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for (item, id) in &same_as {
            self.ledger.same_as(item, id);
        }
        self.ledger.commit(&[])?;
        // Records of items processed again (changed input, prompt or model) leave the files.
        self.ledger.compact()?;
        self.ledger.end_run(end)?;
        Ok(self.ledger.duplicate_ids)
    }
}

/// The resume policy of one run.
#[derive(Default)]
pub struct Policy {
    priors: Priors,
    config_sha256: String,
    retry_failed: bool,
    /// Items skipped because they failed in an earlier run.
    skipped_failed: AtomicU64,
    /// Renamed files skipped as copies of a done item: (the new item, the done item's id).
    same_as: Mutex<Vec<(Item, String)>>,
}

impl Policy {
    /// What intake does with `item`.
    pub fn admit(&self, item: &Item) -> Admit {
        let prior = self.priors.get(&item.id);
        if self.retry_failed {
            return if prior.is_some_and(|p| !p.done) {
                Admit::Process
            } else {
                Admit::Skip
            };
        }
        // An input that could not be read (or repeats an id) is reported on every run.
        if item.failure.is_some() {
            return Admit::Process;
        }
        match prior {
            Some(p)
                if p.input_sha256 == item.input_sha256 && p.config_sha256 == self.config_sha256 =>
            {
                if !p.done {
                    self.skipped_failed.fetch_add(1, Ordering::Relaxed);
                }
                Admit::Skip
            }
            _ => {
                // A renamed file: the same bytes were done under a name that is gone.
                let renamed = || {
                    self.priors
                        .done_copies(&item.input_sha256, &self.config_sha256)
                        .into_iter()
                        .find(|(id, origin)| *id != item.id && !Path::new(origin).exists())
                };
                if item.rel_path.is_some()
                    && let Some((id, _)) = renamed()
                {
                    let copy = Item::hashed(
                        item.id.clone(),
                        item.origin.clone(),
                        item.input_sha256.clone(),
                        serde_json::Map::new(),
                    );
                    self.same_as
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((copy, id));
                    return Admit::Skip;
                }
                Admit::Process
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{EncoderConfig, ResolvedFile};

    // The same files with another window, pooling or normalization give another key, so the
    // items are processed again.
    #[test]
    fn encoder_settings_are_in_the_key() {
        let model = |pooling: &str, normalize: bool| ResolvedModel {
            name: "e5".into(),
            engine: "onnx".into(),
            files: vec![ResolvedFile {
                role: "model".into(),
                path: "m.onnx".into(),
                sha256: "abc".into(),
            }],
            encoder: Some(EncoderConfig {
                max_tokens: 512,
                pooling: Some(pooling.into()),
                normalize,
            }),
            verified: true,
        };
        let base = key("c", &[model("mean", true)]);
        assert_eq!(base, key("c", &[model("mean", true)]));
        assert_ne!(base, key("c", &[model("cls", true)]));
        assert_ne!(base, key("c", &[model("mean", false)]));
    }
}

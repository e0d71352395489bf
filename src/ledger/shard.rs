//! Sharding a run across machines, and merging the shards' outputs and ledgers.
//!
//! Each item belongs to exactly one shard, picked by a hash of its id, so N processes given
//! the same inputs split them without talking to each other. Shard K of N writes into
//! `OUT/shard-K-of-N`, with its own ledger; `merge` joins the shards into `OUT`.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rusqlite::params;
use sha2::{Digest, Sha256};

use super::{FILE, Ledger};
use crate::component::Repair;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shard {
    pub k: u64,
    pub n: u64,
}

impl Shard {
    /// Refuses outputs outside the shard's folder `dir` (`stdout` aside): shards running side
    /// by side would write the same file.
    pub fn check_outputs<'a>(
        &self,
        mut targets: impl Iterator<Item = &'a String>,
        dir: &Path,
    ) -> anyhow::Result<()> {
        if let Some(outside) = targets.find(|t| *t != "stdout" && !Path::new(t).starts_with(dir)) {
            bail!(
                "shard {}: output {outside} is outside the shard's folder {}; in a sharded run every output path must start with {{out}}",
                self.label(),
                dir.display()
            );
        }
        Ok(())
    }

    /// `K/N` with `0 <= K < N`.
    pub fn parse(text: &str) -> anyhow::Result<Shard> {
        let parsed = text
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((k, n)) if k < n => Ok(Shard { k, n }),
            _ => bail!("shard `{text}` is not K/N with 0 <= K < N, e.g. --shard 0/4"),
        }
    }

    /// The shard a cluster scheduler assigned: a Kubernetes Indexed Job
    /// (`JOB_COMPLETION_INDEX`, with `JOB_COMPLETIONS` set to the Job's completions) or a Slurm
    /// job array (`SLURM_ARRAY_TASK_ID` from `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT`).
    pub fn from_env(var: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<Shard>> {
        let number = |name: &str| -> anyhow::Result<Option<u64>> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse()
                        .with_context(|| format!("${name} is `{v}`, not a whole number"))
                })
                .transpose()
        };
        if let Some(k) = number("JOB_COMPLETION_INDEX")? {
            let Some(n) = number("JOB_COMPLETIONS")? else {
                bail!(
                    "$JOB_COMPLETION_INDEX is set but $JOB_COMPLETIONS is not; set it to the Job's `completions` (see deploy/kubernetes-indexed-job.yaml) or give --shard K/N"
                );
            };
            return Shard::parse(&format!("{k}/{n}")).map(Some);
        }
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let Some(n) = number("SLURM_ARRAY_TASK_COUNT")? else {
                bail!(
                    "$SLURM_ARRAY_TASK_ID is set but $SLURM_ARRAY_TASK_COUNT is not; give --shard K/N"
                );
            };
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            return Shard::parse(&format!("{}/{n}", id.saturating_sub(min))).map(Some);
        }
        Ok(None)
    }

    /// Whether the item with this id is this shard's: a stable hash, the same on every machine.
    pub fn owns(&self, id: &str) -> bool {
        let hash = Sha256::digest(id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash[..8]);
        u64::from_be_bytes(first) % self.n == self.k
    }

    pub fn dir(&self, out: &Path) -> PathBuf {
        out.join(format!("shard-{}-of-{}", self.k, self.n))
    }

    pub fn label(&self) -> String {
        format!("{}/{}", self.k, self.n)
    }
}

/// What `merge` did.
pub struct Merged {
    pub shards: u64,
    pub done: u64,
    pub failed: u64,
}

/// Joins `out/shard-K-of-N` (all of 0..N-1) into `out`: appended files concatenated record by
/// record in shard order, items' own files copied, every run and item into `out`'s ledger;
/// `repairs` fix each joined file's own header.
pub fn merge(out: &Path, repairs: &'static [Repair]) -> anyhow::Result<Merged> {
    let shards = find_shards(out)?;
    let merged_ledger = out.join(FILE);
    if merged_ledger.exists() {
        let ledger = Ledger::open(out, repairs)?;
        let own: i64 =
            ledger
                .conn
                .query_row("SELECT count(*) FROM runs WHERE shard IS NULL", [], |r| {
                    r.get(0)
                })?;
        if own > 0 {
            bail!(
                "{} has runs of its own (not shards); merge into a folder used only by shards",
                out.display()
            );
        }
        drop(ledger);
        for suffix in ["", "-wal", "-shm"] {
            let mut path = merged_ledger.as_os_str().to_owned();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
    let mut merged = Ledger::open(out, repairs)?;
    let mut files: HashMap<String, (BufWriter<File>, u64, u64)> = HashMap::new();
    let mut counts = Merged {
        shards: shards.len() as u64,
        done: 0,
        failed: 0,
    };
    for (shard, dir) in &shards {
        let Some(_lock) = super::lock(dir)? else {
            bail!(
                "shard {} is still running ({})",
                shard.label(),
                dir.display()
            );
        };
        let mut source = Ledger::open(dir, repairs)?;
        source.repair()?;
        source.compact()?;
        drop(source);
        merged.conn.execute(
            "ATTACH DATABASE ?1 AS shard",
            [dir.join(FILE).to_string_lossy()],
        )?;
        let tx = merged.conn.transaction()?;
        tx.execute("INSERT INTO runs SELECT * FROM shard.runs", [])?;
        let base: i64 =
            tx.query_row("SELECT coalesce(max(item), 0) FROM items", [], |r| r.get(0))?;
        tx.execute(
            "INSERT INTO items SELECT item + ?1, name, id, run_id, origin, input_sha256,
                    status, current, stage, error, same_as, timings, finished_at, cpu_s, gpu_s
                    FROM shard.items",
            [base],
        )?;
        let (done, failed): (u64, u64) = tx.query_row(
            "SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'failed')
             FROM shard.items WHERE current = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        counts.done += done;
        counts.failed += failed;
        let outputs: Vec<(i64, String, Option<u64>, Option<u64>)> = {
            let mut stmt = tx.prepare(
                "SELECT o.item, o.path, o.offset, o.length FROM shard.outputs o
                 JOIN shard.items i ON i.item = o.item WHERE i.current = 1 ORDER BY o.path, o.offset",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let headers: HashMap<String, u64> = {
            let mut stmt = tx.prepare("SELECT path, header FROM shard.files")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut open: Option<(String, File)> = None;
        for (item, key, offset, length) in outputs {
            check_inside(&key, dir)?;
            let target = out.join(&key);
            let source_path = dir.join(&key);
            let (offset, length) = match offset.zip(length) {
                Some(range) => range,
                None => {
                    crate::component::create_parent(&target)?;
                    std::fs::copy(&source_path, &target).with_context(|| {
                        format!(
                            "cannot copy {} to {}",
                            source_path.display(),
                            target.display()
                        )
                    })?;
                    tx.execute(
                        "INSERT INTO outputs (item, path) VALUES (?1, ?2)",
                        params![item + base, key],
                    )?;
                    continue;
                }
            };
            if open.as_ref().is_none_or(|(k, _)| *k != key) {
                let file = File::open(&source_path)
                    .with_context(|| format!("cannot read {}", source_path.display()))?;
                open = Some((key.clone(), file));
            }
            let Some((_, from)) = open.as_mut() else {
                unreachable!("opened above")
            };
            if !files.contains_key(&key) {
                // The first shard with this file gives the header (a CSV header row, npy).
                crate::component::create_parent(&target)?;
                let mut to = BufWriter::new(
                    File::create(&target)
                        .with_context(|| format!("cannot create {}", target.display()))?,
                );
                let header = headers.get(&key).copied().unwrap_or(0);
                super::files::copy_range(from, &mut to, 0, header)?;
                files.insert(key.clone(), (to, header, header));
            }
            let Some((to, len, _)) = files.get_mut(&key) else {
                unreachable!("inserted above")
            };
            super::files::copy_range(from, to, offset, length)
                .with_context(|| format!("cannot read {}", source_path.display()))?;
            tx.execute(
                "INSERT INTO outputs (item, path, offset, length) VALUES (?1, ?2, ?3, ?4)",
                params![item + base, key, *len, length],
            )?;
            *len += length;
        }
        tx.commit()?;
        merged.conn.execute("DETACH DATABASE shard", [])?;
    }
    let tx = merged.conn.transaction()?;
    for (key, (to, len, header)) in files {
        to.into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", out.join(&key).display()))?;
        tx.execute(
            "INSERT INTO files (path, length, header) VALUES (?1, ?2, ?3)",
            params![key, len, header],
        )?;
        super::files::repair(&out.join(&key), repairs)?;
    }
    tx.commit()?;
    Ok(counts)
}

/// An output path from a shard's ledger is a plain relative path inside the folder: a ledger
/// is a file anyone may have edited, and merging must never read or write outside `out`.
fn check_inside(key: &str, shard: &Path) -> anyhow::Result<()> {
    let path = Path::new(key);
    let plain = !key.is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        bail!(
            "the ledger of {} names an output outside its folder ({key:?}); refusing to merge \
             it: the ledger was edited or damaged (rerun that shard with --fresh)",
            shard.display()
        );
    }
    Ok(())
}

/// Every `shard-K-of-N` folder in `out`, in K order; all of 0..N-1 must be there.
fn find_shards(out: &Path) -> anyhow::Result<Vec<(Shard, PathBuf)>> {
    let entries = std::fs::read_dir(out)
        .with_context(|| format!("cannot read the output folder {}", out.display()))?;
    let mut shards: Vec<(Shard, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (k, n) = name.strip_prefix("shard-")?.split_once("-of-")?;
            let shard = Shard::parse(&format!("{k}/{n}")).ok()?;
            Some((shard, e.path()))
        })
        .collect();
    shards.sort_by_key(|(s, _)| (s.n, s.k));
    let Some((first, _)) = shards.first() else {
        bail!(
            "no shard-K-of-N folders in {}; run `lai run ... -o {} --shard K/N` for each K first",
            out.display(),
            out.display()
        );
    };
    let n = first.n;
    if shards.iter().any(|(s, _)| s.n != n) {
        bail!(
            "{} holds shards of different counts N; merge one sharding at a time",
            out.display()
        );
    }
    let missing: Vec<String> = (0..n)
        .filter(|k| !shards.iter().any(|(s, _)| s.k == *k))
        .map(|k| format!("shard-{k}-of-{n}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} lacks {}; run those shards first",
            out.display(),
            missing.join(", ")
        );
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every id lands in exactly one shard, and the split is roughly even.
    #[test]
    fn each_id_in_one_shard() {
        let shards: Vec<Shard> = (0..4).map(|k| Shard { k, n: 4 }).collect();
        let mut sizes = [0; 4];
        for i in 0..4000 {
            let id = format!("docs/{i}.txt");
            let owners: Vec<_> = shards.iter().filter(|s| s.owns(&id)).collect();
            assert_eq!(owners.len(), 1);
            sizes[owners[0].k as usize] += 1;
        }
        assert!(sizes.iter().all(|&s| (800..1200).contains(&s)), "{sizes:?}");
    }

    // Output paths from a shard's ledger that leave the folder are refused before merging.
    #[test]
    fn merge_refuses_paths_outside() {
        let shard = Path::new("out/shard-0-of-2");
        assert!(check_inside("redacted.jsonl", shard).is_ok());
        assert!(check_inside("text/a.txt", shard).is_ok());
        for bad in ["../x", "/etc/passwd", "a/../../x", "", "./a"] {
            let err = check_inside(bad, shard).unwrap_err().to_string();
            assert!(err.contains("outside its folder"), "{bad}: {err}");
        }
    }

    #[test]
    fn parse_and_env() {
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { k: 1, n: 3 });
        assert!(Shard::parse("3/3").is_err() && Shard::parse("a/b").is_err());
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2"), ("JOB_COMPLETIONS", "5")]);
        assert_eq!(Shard::from_env(&k8s).unwrap(), Some(Shard { k: 2, n: 5 }));
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(Shard::from_env(&slurm).unwrap(), Some(Shard { k: 3, n: 4 }));
        assert!(Shard::from_env(&env(&[("JOB_COMPLETION_INDEX", "0")])).is_err());
        assert_eq!(Shard::from_env(&env(&[])).unwrap(), None);
    }
}

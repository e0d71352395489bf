//! The run ledger: an SQLite database in the output folder (`lai-ledger.sqlite`) recording every
//! run and every item, and where each item's output went.
//!
//! It is what makes runs resumable and crash safe. The writer appends records to the output
//! files, flushes them, and only then commits the items and the files' new lengths in one
//! transaction; so after a `kill -9` anything past a file's committed length is a torn or
//! unrecorded record, cut off before the next run continues the file. An item processed again
//! (changed input, prompt or model; a retried failure) replaces its earlier row, and
//! `compact` removes the earlier row's records from the files, so every item appears once.
//!
//! The schema (`SCHEMA`) is documented in the README; `lai ledger` prints the common queries.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rusqlite::{Connection, OptionalExtension, params};

use crate::component::{Committed, Place, Repair};
use crate::item::Item;

mod files;
pub mod resume;
pub mod shard;
pub mod views;

pub const FILE: &str = "lai-ledger.sqlite";

/// Bumped when the schema changes incompatibly; an older ledger is refused with a message.
const VERSION: i64 = 3;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run_id          TEXT PRIMARY KEY,
    name            TEXT NOT NULL,     -- the pipeline's name: items are keyed by name and id
    pipeline        TEXT NOT NULL,     -- the pipeline file as given
    pipeline_sha256 TEXT NOT NULL,     -- of its bytes
    config_sha256   TEXT NOT NULL,     -- effective config + files it reads + model sha256s
    lai_version     TEXT NOT NULL,
    models          TEXT NOT NULL,     -- JSON {model name: sha256 of its main file}
    host            TEXT NOT NULL,
    shard           TEXT,              -- 'K/N' for a shard of a sharded run
    started_at      TEXT NOT NULL,     -- UTC, RFC 3339
    finished_at     TEXT,              -- NULL: still running, or killed
    exit_code       INTEGER,
    items_read      INTEGER,
    items_done      INTEGER,
    items_failed    INTEGER,
    items_skipped   INTEGER,           -- already done (resume) or outside --retry-failed
    confinement     TEXT,              -- JSON: what the kernel held the run to, or mode 'off'
    cost            TEXT               -- JSON: seconds, energy, money, rates (see the report)
);
CREATE TABLE IF NOT EXISTS items (
    item          INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,       -- the pipeline's name (pipelines sharing a folder)
    id            TEXT NOT NULL,       -- file path below the input, or the JSONL record id
    run_id        TEXT NOT NULL REFERENCES runs (run_id),
    origin        TEXT NOT NULL,       -- 'docs/a.txt', 'tickets.jsonl:12'
    input_sha256  TEXT NOT NULL,
    status        TEXT NOT NULL,       -- 'done' | 'failed'
    current       INTEGER NOT NULL,    -- 1: the item's latest result; 0: replaced by a later one
    stage         TEXT,                -- failed: the stage that failed ('input' when unreadable)
    error         TEXT,                -- failed: why
    same_as       TEXT,                -- done without processing: identical to this item id
    timings       TEXT,                -- JSON {stage: seconds in the stage call}
    finished_at   TEXT NOT NULL,
    cpu_s         REAL,                -- CPU seconds charged to the item, all stages
    gpu_s         REAL                 -- GPU seconds charged to the item, all stages
);
CREATE INDEX IF NOT EXISTS items_by_id ON items (name, id, current);
CREATE TABLE IF NOT EXISTS outputs (
    item   INTEGER NOT NULL REFERENCES items (item),
    path   TEXT NOT NULL,              -- relative to the output folder when inside it
    offset INTEGER,                    -- byte range of the item's record in a shared file;
    length INTEGER                     -- NULL offset: a file of the item's own (SRT, TXT),
                                       -- and length its size when written
);
CREATE INDEX IF NOT EXISTS outputs_by_item ON outputs (item);
CREATE TABLE IF NOT EXISTS files (
    path   TEXT PRIMARY KEY,           -- a file records are appended to
    length INTEGER NOT NULL,           -- bytes known good: everything after is cut on resume
    header INTEGER NOT NULL            -- bytes before the first record
);
CREATE TABLE IF NOT EXISTS doomed (
    item INTEGER PRIMARY KEY           -- replaced items whose records are still in the files
);
CREATE TABLE IF NOT EXISTS renames (
    tmp  TEXT NOT NULL,                -- a compacted copy to move over `path` (crash recovery)
    path TEXT NOT NULL
);
";

pub struct Ledger {
    pub(crate) conn: Connection,
    out_dir: PathBuf,
    /// Items written since the last commit.
    pending: Vec<Written>,
    run_id: String,
    /// The pipeline's name, which items are keyed under with their id.
    name: String,
    /// Items of this run whose id an earlier item of this run already had.
    pub duplicate_ids: u64,
    /// The output formats' own repairs, run on a file after its records were cut or joined.
    repairs: &'static [Repair],
}

/// An item as the writer delivered it, waiting for the next commit.
struct Written {
    id: String,
    origin: String,
    input_sha256: String,
    failure: Option<(String, String)>,
    same_as: Option<String>,
    timings: String,
    usage: crate::item::Usage,
    places: Vec<Place>,
}

/// What a previous run left for one item id: its current row.
pub struct Prior {
    pub done: bool,
    pub input_sha256: String,
    pub config_sha256: String,
}

/// Earlier results, looked up one item at a time (nothing is loaded up front, so memory stays
/// flat however many items the ledger holds).
#[derive(Default)]
pub struct Priors {
    conn: Option<std::sync::Mutex<Connection>>,
    /// The pipeline name the items are looked up under.
    name: String,
    /// Content hash prefix -> items done with the run's configuration (see `done_copies`).
    copies: std::sync::OnceLock<HashMap<u64, Vec<i64>>>,
}

impl Priors {
    fn query<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        let conn = self.conn.as_ref()?;
        let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).ok()
    }

    /// The current result of item `id`, if any (`None` too if the ledger cannot be read: the
    /// item is processed again, never lost).
    pub fn get(&self, id: &str) -> Option<Prior> {
        self.query(|c| {
            c.prepare_cached(
                "SELECT i.status = 'done', i.input_sha256, r.config_sha256
                 FROM items i JOIN runs r ON r.run_id = i.run_id
                 WHERE i.name = ?2 AND i.id = ?1 AND i.current = 1",
            )?
            .query_row([id, &self.name], |r| {
                Ok(Prior {
                    done: r.get(0)?,
                    input_sha256: r.get(1)?,
                    config_sha256: r.get(2)?,
                })
            })
        })
    }

    /// (id, origin) of the items done from these exact input bytes with this configuration.
    /// The first call reads every current done item's content hash into memory (no index
    /// on content: it would slow every commit), so only runs that ask pay for it.
    pub fn done_copies(&self, input_sha256: &str, config_sha256: &str) -> Vec<(String, String)> {
        let copies = self.copies.get_or_init(|| {
            self.query(|c| {
                let mut stmt = c.prepare(
                    "SELECT i.input_sha256, i.item FROM items i JOIN runs r ON r.run_id = i.run_id
                     WHERE r.config_sha256 = ?1 AND i.name = ?2 AND i.current = 1
                       AND i.status = 'done' AND i.same_as IS NULL",
                )?;
                let mut copies: HashMap<u64, Vec<i64>> = HashMap::new();
                let mut rows = stmt.query([config_sha256, &self.name])?;
                while let Some(r) = rows.next()? {
                    let sha: String = r.get(0)?;
                    copies.entry(content(&sha)).or_default().push(r.get(1)?);
                }
                Ok(copies)
            })
            .unwrap_or_default()
        });
        let Some(items) = copies.get(&content(input_sha256)) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| {
                self.query(|c| {
                    c.prepare_cached("SELECT id, origin, input_sha256 FROM items WHERE item = ?1")?
                        .query_row([item], |r| {
                            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, String>(2)?))
                        })
                })
            })
            .filter(|(_, _, sha)| sha == input_sha256)
            .map(|(id, origin, _)| (id, origin))
            .collect()
    }
}

/// One run's row, written when it starts.
pub struct RunRow<'a> {
    pub run_id: &'a str,
    /// The pipeline's name: items are keyed by it and their id.
    pub name: &'a str,
    pub pipeline: &'a str,
    pub pipeline_sha256: &'a str,
    pub config_sha256: &'a str,
    pub models: String,
    pub shard: Option<String>,
    pub started_at: &'a str,
}

/// A run's counts, written when it ends.
pub struct RunEnd {
    /// JSON: the report's `cost`.
    pub cost: String,
    pub finished_at: String,
    pub exit_code: i32,
    pub read: u64,
    pub done: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Ledger {
    /// Opens (or creates) the ledger of `out_dir`, finishing a compaction a crash interrupted;
    /// `repairs` bring a file's own header in line after its records were cut or joined.
    pub fn open(out_dir: &Path, repairs: &'static [Repair]) -> anyhow::Result<Ledger> {
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("cannot create the output folder {}", out_dir.display()))?;
        let path = out_dir.join(FILE);
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open the run ledger {}", path.display()))?;
        let unusable = || {
            format!(
                "{} is not a usable lai ledger; move it away (the next run then processes every item again)",
                path.display()
            )
        };
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .with_context(unusable)?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .with_context(unusable)?;
        // Version 1 lacked the runs' confinement, version 2 the costs; nothing else changed.
        if tables > 0 && (version == 1 || version == 2) {
            let confinement = if version == 1 {
                "ALTER TABLE runs ADD COLUMN confinement TEXT;"
            } else {
                ""
            };
            conn.execute_batch(&format!(
                "BEGIN; {confinement} ALTER TABLE runs ADD COLUMN cost TEXT;
                 ALTER TABLE items ADD COLUMN cpu_s REAL; ALTER TABLE items ADD COLUMN gpu_s REAL;
                 PRAGMA user_version = {VERSION}; COMMIT;"
            ))
            .with_context(unusable)?;
        } else if tables > 0 && version != VERSION {
            bail!(
                "{} was written by another version of lai (ledger version {version}, this lai uses {VERSION}); use a new output folder or move it away",
                path.display()
            );
        }
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;
             {SCHEMA} PRAGMA user_version = {VERSION};"
        ))
        .with_context(unusable)?;
        let mut ledger = Ledger {
            conn,
            out_dir: out_dir.to_path_buf(),
            pending: Vec::new(),
            run_id: String::new(),
            name: String::new(),
            duplicate_ids: 0,
            repairs,
        };
        ledger.finish_renames()?;
        Ok(ledger)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.out_dir.join(key)
    }

    /// Cuts every appended file back to its committed length. A file shorter than that (a
    /// power cut before the OS wrote it) loses the items whose records it no longer holds:
    /// they become not done, so this run processes them again; so do done items whose file
    /// of their own is missing (see `give_back_lost_own_files`). Returns bytes cut.
    pub fn repair(&mut self) -> anyhow::Result<u64> {
        self.give_back_lost_own_files()?;
        let files = self.files()?;
        let mut cut = 0;
        for (key, committed) in files {
            let path = self.path(&key);
            let found = std::fs::metadata(&path).map(|m| m.len()).ok();
            match found {
                Some(actual) if actual > committed.len => {
                    files::truncate(&path, committed.len, self.repairs)?;
                    cut += actual - committed.len;
                    continue;
                }
                Some(actual) if actual == committed.len => continue,
                _ => {}
            }
            // Shorter than committed, or gone: its items past the end are lost.
            let actual = found.unwrap_or(0);
            let tx = self.conn.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO doomed
                 SELECT item FROM outputs WHERE path = ?1 AND offset + length > ?2",
                params![key, actual],
            )?;
            tx.execute(
                "UPDATE items SET current = 0 WHERE item IN
                   (SELECT item FROM outputs WHERE path = ?1 AND offset + length > ?2)",
                params![key, actual],
            )?;
            tx.execute(
                "DELETE FROM outputs WHERE path = ?1 AND offset + length > ?2",
                params![key, actual],
            )?;
            let end: Option<u64> = tx.query_row(
                "SELECT max(offset + length) FROM outputs WHERE path = ?1",
                [&key],
                |r| r.get(0),
            )?;
            let keep = end.unwrap_or(committed.header);
            let restart = found.is_none() || actual < committed.header;
            if restart {
                // Not even the header survived: the file starts over.
                tx.execute("DELETE FROM files WHERE path = ?1", [&key])?;
            } else {
                tx.execute(
                    "UPDATE files SET length = ?2 WHERE path = ?1",
                    params![key, keep],
                )?;
            }
            tx.commit()?;
            if !restart {
                files::truncate(&path, keep, self.repairs)?;
            }
            cut += actual.saturating_sub(keep);
        }
        Ok(cut)
    }

    /// Done items whose file of their own (a TXT, an SRT) is gone, or empty where it was
    /// written with bytes (or its size was not recorded), become not done, and their other
    /// records are dropped at the next `compact`: the run writes them again. A file edited by
    /// hand is left alone. One `stat` per file of its own.
    fn give_back_lost_own_files(&mut self) -> anyhow::Result<()> {
        let lost: Vec<i64> = {
            let mut stmt = self.conn.prepare(
                "SELECT o.item, o.path, o.length FROM outputs o JOIN items i ON i.item = o.item
                 WHERE o.offset IS NULL AND i.current = 1 AND i.status = 'done'",
            )?;
            let mut rows = stmt.query([])?;
            let mut lost = Vec::new();
            while let Some(r) = rows.next()? {
                let key: String = r.get(1)?;
                let written: Option<u64> = r.get(2)?;
                let found = std::fs::metadata(self.path(&key)).map(|m| m.len()).ok();
                if found.is_none() || (found == Some(0) && written != Some(0)) {
                    lost.push(r.get(0)?);
                }
            }
            lost
        };
        if lost.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        for item in lost {
            tx.execute("INSERT OR IGNORE INTO doomed (item) VALUES (?1)", [item])?;
            tx.execute("UPDATE items SET current = 0 WHERE item = ?1", [item])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The appended files and their committed lengths, for sinks to continue.
    pub fn resume(&self) -> anyhow::Result<HashMap<PathBuf, Committed>> {
        Ok(self
            .files()?
            .into_iter()
            .map(|(key, c)| (self.path(&key), c))
            .collect())
    }

    fn files(&self) -> anyhow::Result<Vec<(String, Committed)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, length, header FROM files")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Committed {
                    len: r.get(1)?,
                    header: r.get(2)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Earlier results, read on a connection of their own while this run's writer commits.
    pub fn priors(&self) -> anyhow::Result<Priors> {
        let conn = Connection::open_with_flags(
            self.out_dir.join(FILE),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        Ok(Priors {
            conn: Some(std::sync::Mutex::new(conn)),
            name: self.name.clone(),
            copies: std::sync::OnceLock::new(),
        })
    }

    /// `--fresh`: every earlier result is replaced; `compact` then empties the files.
    /// Only this run's pipeline's items: others sharing the folder keep theirs.
    pub fn forget_all(&mut self) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO doomed SELECT item FROM items WHERE name = ?1 AND current = 1",
            [&self.name],
        )?;
        tx.execute(
            "UPDATE items SET current = 0 WHERE name = ?1 AND current = 1",
            [&self.name],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn begin_run(&mut self, run: &RunRow) -> anyhow::Result<()> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default();
        self.conn.execute(
            "INSERT INTO runs (run_id, name, pipeline, pipeline_sha256, config_sha256,
                               lai_version, models, host, shard, started_at)
             VALUES (?1, ?10, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run.run_id,
                run.pipeline,
                run.pipeline_sha256,
                run.config_sha256,
                env!("CARGO_PKG_VERSION"),
                run.models,
                host,
                run.shard,
                run.started_at,
                run.name
            ],
        )?;
        self.run_id = run.run_id.to_string();
        self.name = run.name.to_string();
        Ok(())
    }

    /// Records what the kernel holds the current run to (JSON).
    pub fn record_confinement(&mut self, confinement: &str) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE runs SET confinement = ?1 WHERE run_id = ?2",
            params![confinement, self.run_id],
        )?;
        Ok(())
    }

    pub fn end_run(&mut self, end: &RunEnd) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE runs SET finished_at = ?2, exit_code = ?3, items_read = ?4, items_done = ?5,
                             items_failed = ?6, items_skipped = ?7, cost = ?8
             WHERE run_id = ?1",
            params![
                self.run_id,
                end.finished_at,
                end.exit_code,
                end.read,
                end.done,
                end.failed,
                end.skipped,
                end.cost
            ],
        )?;
        Ok(())
    }

    /// Notes an item the writer delivered; it is committed with the next `commit`.
    pub fn written(&mut self, item: &Item, places: Vec<Place>) {
        let timings: serde_json::Map<String, serde_json::Value> = item
            .timings
            .iter()
            .map(|(stage, s)| (stage.clone(), serde_json::json!((s * 1e4).round() / 1e4)))
            .collect();
        self.pending.push(Written {
            id: item.id.clone(),
            origin: item.origin.clone(),
            input_sha256: item.input_sha256.clone(),
            failure: item
                .failure
                .as_ref()
                .map(|f| (f.stage.clone(), f.reason.clone())),
            same_as: None,
            timings: serde_json::Value::Object(timings).to_string(),
            usage: item.usage,
            places,
        });
    }

    /// Records that an item is identical (same content, same config) to an item already done
    /// under another id, so it was not processed again.
    pub fn same_as(&mut self, item: &Item, done_id: &str) {
        self.pending.push(Written {
            id: item.id.clone(),
            origin: item.origin.clone(),
            input_sha256: item.input_sha256.clone(),
            failure: None,
            same_as: Some(done_id.to_string()),
            timings: "{}".into(),
            usage: crate::item::Usage::default(),
            places: Vec::new(),
        });
    }

    /// Commits the pending items and the files' lengths (taken after the sinks flushed).
    pub fn commit(&mut self, files: &[(PathBuf, Committed)]) -> anyhow::Result<()> {
        let now = crate::item::timestamp(std::time::SystemTime::now());
        let out_dir = &self.out_dir;
        let tx = self.conn.transaction()?;
        {
            let mut replace = tx.prepare_cached(
                "UPDATE items SET current = 0 WHERE name = ?2 AND id = ?1 AND current = 1
                 RETURNING item, run_id",
            )?;
            let mut doom = tx.prepare_cached("INSERT OR IGNORE INTO doomed (item) VALUES (?1)")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO items (name, id, run_id, origin, input_sha256, status, current,
                                    stage, error, same_as, timings, finished_at, cpu_s, gpu_s)
                 VALUES (?11, ?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9, ?10, ?12, ?13)",
            )?;
            let mut output = tx.prepare_cached(
                "INSERT INTO outputs (item, path, offset, length) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for w in &self.pending {
                let replaced: Option<(i64, String)> = replace
                    .query_row([&w.id, &self.name], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((item, run)) = replaced {
                    doom.execute([item])?;
                    if run == self.run_id {
                        self.duplicate_ids += 1;
                    }
                }
                let (stage, error) = w.failure.clone().unzip();
                insert.execute(params![
                    w.id,
                    self.run_id,
                    w.origin,
                    w.input_sha256,
                    if w.failure.is_some() {
                        "failed"
                    } else {
                        "done"
                    },
                    stage,
                    error,
                    w.same_as,
                    w.timings,
                    now,
                    self.name,
                    w.usage.cpu_s,
                    w.usage.gpu_s
                ])?;
                let item = tx.last_insert_rowid();
                for place in &w.places {
                    let (offset, length) = match place.range {
                        Some((offset, length)) => (Some(offset), Some(length)),
                        None => (None, place.own_len),
                    };
                    let path = key(out_dir, &place.path);
                    output.execute(params![item, path, offset, length])?;
                }
            }
            let mut file = tx.prepare_cached(
                "INSERT INTO files (path, length, header) VALUES (?1, ?2, ?3)
                 ON CONFLICT (path) DO UPDATE SET length = ?2, header = ?3",
            )?;
            for (path, c) in files {
                file.execute(params![key(out_dir, path), c.len, c.header])?;
            }
        }
        tx.commit()?;
        self.pending.clear();
        Ok(())
    }

    /// Removes the records of replaced items from the files (and their own files that no
    /// current item uses), so each item appears once. Returns how many records went.
    pub fn compact(&mut self) -> anyhow::Result<u64> {
        let stale: Vec<(String, bool)> = {
            let mut stmt = self.conn.prepare(
                "SELECT DISTINCT path, offset IS NOT NULL FROM outputs
                 WHERE item IN (SELECT item FROM doomed)",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut removed = 0;
        for (key, ranged) in stale {
            removed += if ranged {
                self.compact_file(&key)?
            } else {
                self.remove_own_file(&key)?
            };
        }
        self.conn.execute("DELETE FROM doomed", [])?;
        Ok(removed)
    }

    /// Rewrites one appended file with only its current items' records.
    fn compact_file(&mut self, key: &str) -> anyhow::Result<u64> {
        let path = self.path(key);
        let header: u64 = self
            .conn
            .query_row("SELECT header FROM files WHERE path = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0);
        let live: Vec<(i64, u64, u64)> = {
            let mut stmt = self.conn.prepare(
                "SELECT rowid, offset, length FROM outputs
                 WHERE path = ?1 AND item NOT IN (SELECT item FROM doomed) ORDER BY offset",
            )?;
            let rows = stmt.query_map([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".lai-compact");
        let tmp = PathBuf::from(tmp);
        let mut moved = Vec::with_capacity(live.len());
        let len = (|| -> io::Result<u64> {
            let mut from = File::open(&path)?;
            let mut to = io::BufWriter::new(File::create(&tmp)?);
            let mut len = files::copy_range(&mut from, &mut to, 0, header)?;
            for (rowid, offset, length) in &live {
                moved.push((*rowid, len));
                len += files::copy_range(&mut from, &mut to, *offset, *length)?;
            }
            to.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            Ok(len)
        })()
        .with_context(|| format!("cannot compact {}", path.display()))?;
        let tx = self.conn.transaction()?;
        let removed = tx.execute(
            "DELETE FROM outputs WHERE path = ?1 AND item IN (SELECT item FROM doomed)",
            [key],
        )?;
        for (rowid, offset) in moved {
            tx.execute(
                "UPDATE outputs SET offset = ?2 WHERE rowid = ?1",
                params![rowid, offset],
            )?;
        }
        tx.execute(
            "UPDATE files SET length = ?2 WHERE path = ?1",
            params![key, len],
        )?;
        tx.execute(
            "INSERT INTO renames (tmp, path) VALUES (?1, ?2)",
            params![tmp.to_string_lossy(), key],
        )?;
        tx.commit()?;
        self.finish_renames()?;
        Ok(removed as u64)
    }

    /// Moves compacted copies into place: the ledger already describes them.
    fn finish_renames(&mut self) -> anyhow::Result<()> {
        let renames: Vec<(String, String)> = {
            let mut stmt = self.conn.prepare("SELECT tmp, path FROM renames")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (tmp, key) in renames {
            let path = self.path(&key);
            if Path::new(&tmp).exists() {
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("cannot replace {}", path.display()))?;
                files::repair(&path, self.repairs)?;
            }
            self.conn
                .execute("DELETE FROM renames WHERE tmp = ?1", [&tmp])?;
        }
        Ok(())
    }

    /// Deletes an item's own file (an SRT of a replaced result) unless a current item uses it.
    fn remove_own_file(&mut self, key: &str) -> anyhow::Result<u64> {
        let used: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM outputs
                            WHERE path = ?1 AND item NOT IN (SELECT item FROM doomed))",
            [key],
            |r| r.get(0),
        )?;
        if !used {
            let path = self.path(key);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                return Err(e).with_context(|| format!("cannot remove {}", path.display()));
            }
        }
        let removed = self.conn.execute(
            "DELETE FROM outputs WHERE path = ?1 AND item IN (SELECT item FROM doomed)",
            [key],
        )?;
        Ok(removed as u64)
    }
}

/// A sha256 (hex) shortened to its first 8 bytes, for an in-memory lookup.
fn content(sha256_hex: &str) -> u64 {
    sha256_hex
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// How a path is stored: relative to the output folder when inside it.
fn key(out_dir: &Path, path: &Path) -> String {
    path.strip_prefix(out_dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The lock file that keeps two runs out of one output folder.
pub const LOCK: &str = "lai.lock";

/// Takes the output folder's lock for as long as the returned file lives; `None` when another
/// process holds it. The OS drops the lock when the process dies, even by `kill -9`.
pub fn lock(out_dir: &Path) -> anyhow::Result<Option<File>> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create the output folder {}", out_dir.display()))?;
    let path = out_dir.join(LOCK);
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> Item {
        Item::new(id.into(), id.into(), id.as_bytes(), serde_json::Map::new())
    }

    // A torn tail past the committed length is cut; a file shorter than committed (a power
    // cut) gives back the items whose records it lost, and keeps the others.
    #[test]
    fn repair_cuts_tails_and_gives_back_lost_items() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path(), &[]).unwrap();
        ledger
            .begin_run(&RunRow {
                run_id: "r1",
                name: "p",
                pipeline: "p.toml",
                pipeline_sha256: "p",
                config_sha256: "c",
                models: "{}".into(),
                shard: None,
                started_at: "t",
            })
            .unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, "a\nbb\n").unwrap();
        for (id, range) in [("a", (0, 2)), ("bb", (2, 3))] {
            let place = Place {
                path: path.clone(),
                range: Some(range),
                own_len: None,
            };
            ledger.written(&item(id), vec![place]);
        }
        let committed = Committed { len: 5, header: 0 };
        ledger.commit(&[(path.clone(), committed)]).unwrap();

        std::fs::write(&path, "a\nbb\nc-to").unwrap();
        assert_eq!(ledger.repair().unwrap(), 4);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nbb\n");

        std::fs::write(&path, "a\nb").unwrap();
        ledger.repair().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n");
        let priors = ledger.priors().unwrap();
        assert!(priors.get("a").is_some_and(|p| p.done));
        assert!(
            priors.get("bb").is_none(),
            "its record is gone: process it again"
        );
        assert_eq!(ledger.resume().unwrap()[&path].len, 2);
        assert_eq!(ledger.compact().unwrap(), 0);
    }

    // A ledger of an earlier version (1: no confinement, 2: no costs) gains the new columns
    // and keeps its rows; one of an unknown version is refused.
    #[test]
    fn earlier_ledgers_are_migrated() {
        for version in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            std::mem::drop(Ledger::open(dir.path(), &[]).unwrap());
            let conn = Connection::open(dir.path().join(FILE)).unwrap();
            let mut old = String::from(
                "ALTER TABLE items DROP COLUMN cpu_s; ALTER TABLE items DROP COLUMN gpu_s;
                 ALTER TABLE runs DROP COLUMN cost;",
            );
            if version == 1 {
                old.push_str("ALTER TABLE runs DROP COLUMN confinement;");
            }
            conn.execute_batch(&format!(
                "{old} INSERT INTO runs (run_id, name, pipeline, pipeline_sha256, config_sha256,
                        lai_version, models, host, started_at)
                 VALUES ('r', 'n', 'p', 's', 'c', 'v', '{{}}', 'h', 't');
                 PRAGMA user_version = {version};"
            ))
            .unwrap();
            std::mem::drop(conn);
            let ledger = Ledger::open(dir.path(), &[]).unwrap();
            let (runs, cost): (i64, Option<String>) = ledger
                .conn
                .query_row("SELECT count(*), max(cost) FROM runs", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!((runs, cost), (1, None));
            ledger
                .conn
                .execute_batch("SELECT confinement FROM runs; SELECT cpu_s, gpu_s FROM items;")
                .unwrap();
            std::mem::drop(ledger);
            let conn = Connection::open(dir.path().join(FILE)).unwrap();
            conn.execute_batch("PRAGMA user_version = 9;").unwrap();
            std::mem::drop(conn);
            let refused = Ledger::open(dir.path(), &[]).err().unwrap();
            assert!(format!("{refused:#}").contains("ledger version 9"));
        }
    }
}

//! The `text` output: one file per item holding one field, mirroring the input tree.
//!
//! Names are one per item and the same in every run: an input file's output keeps the file's
//! name, extension included, and adds its own (`a.md` -> `a.md.txt`, `x.mp3` -> `x.mp3.srt`),
//! so `a.txt` and `a.md`, or `x.wav` and `x.mp3`, never share one. A record id that is not a
//! safe file name as it is (`a/b`, `../x`) is made safe and gets `~` and a hash of the id
//! (`a_b~c14cddc033f64b9d.txt`), so it cannot meet the id `a_b`. A name longer than `KEEP`
//! bytes is cut and ends the same way, so every name fits the file system's 255 bytes.
//!
//! Each file is written under a temporary name and renamed into place, so a crash leaves
//! either no file or a complete one, never a torn one; a flush puts the files written since
//! the last one on disk before the ledger commits their items.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::component::{OpenContext, Place, Sink, SinkSpec, item_error};
use crate::item::Item;
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

pub const KIND: ComponentKind<dyn SinkSpec> = ComponentKind {
    name: "text",
    doc: "One file per item holding one field, named after the input file with the extension added (or after the record id).",
    options: OPTIONS,
    build,
};

const OPTIONS: &[OptionSpec] = &[
    opt(
        "dir",
        Ty::Str,
        Default::Value("\"{out}/text\""),
        "Folder to write into (`{out}` is the --out folder).",
    ),
    opt(
        "field",
        Ty::Str,
        Default::Value("\"text\""),
        "Field to write.",
    ),
    opt(
        "extension",
        Ty::Str,
        Default::Value("\"txt\""),
        "File extension added to the names of the written files (`a.md` -> `a.md.txt`).",
    ),
];

/// Turns an item's field into a file's contents; None writes no file.
pub type Render = fn(&Item, &str) -> Option<String>;

/// The per-item file writer shared by `text` and the subtitle outputs (`srt`, `vtt`).
pub struct TextSpec {
    pub dir: String,
    pub field: String,
    pub extension: String,
    pub render: Render,
}

fn build(options: &Options, _diag: &mut Diagnostics) -> Option<Box<dyn SinkSpec>> {
    Some(Box::new(TextSpec {
        dir: options.str("dir"),
        field: options.str("field"),
        extension: options.str("extension"),
        render: |item, field| item.field_text(field),
    }))
}

impl SinkSpec for TextSpec {
    fn open(&self, ctx: &OpenContext) -> anyhow::Result<Box<dyn Sink>> {
        let dir = ctx.resolve(&self.dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create folder {}: {e}", dir.display()))?;
        Ok(Box::new(TextSink {
            dir,
            field: self.field.clone(),
            extension: self.extension.clone(),
            render: self.render,
            unsynced: Vec::new(),
            last: None,
        }))
    }

    fn writes(&self, ctx: &OpenContext) -> Vec<PathBuf> {
        vec![ctx.resolve(&self.dir)]
    }
}

struct TextSink {
    dir: PathBuf,
    field: String,
    extension: String,
    render: Render,
    /// Files written since the last flush, to put on disk before their items are committed.
    unsynced: Vec<PathBuf>,
    /// The file the last `write` made, for `undo`.
    last: Option<PathBuf>,
}

/// Longest file name written as it is. A longer one is cut and ends in `~` and a hash: it is
/// `KEEP + 1` to `KEEP + 4` bytes long (never the length of a name kept as it is) and leaves
/// room under the common 255-byte limit for the temporary name's `.lai-tmp`.
const KEEP: usize = 200;

/// Hex digits of the id's sha256 in a cut or made-safe name: 64 bits, no accidental meeting.
const HASH_HEX: usize = 16;

impl TextSink {
    fn path_for(&self, item: &Item) -> PathBuf {
        self.dir.join(own_name(item, &self.extension))
    }
}

/// The item's file below the output folder (see the module doc for the rules).
fn own_name(item: &Item, extension: &str) -> PathBuf {
    if let Some(rel) = &item.rel_path {
        let mut name: OsString = rel.file_name().unwrap_or(rel.as_os_str()).to_owned();
        name.push(".");
        name.push(extension);
        if name.len() > KEEP {
            let lossy = name.to_string_lossy().into_owned();
            name = hashed(&lossy, &item.id, extension, KEEP + 4).into();
        }
        return rel.with_file_name(name);
    }
    let safe = safe_name(&item.id);
    let name = format!("{safe}.{extension}");
    PathBuf::from(if safe != item.id {
        hashed(&safe, &item.id, extension, KEEP)
    } else if name.len() > KEEP {
        hashed(&safe, &item.id, extension, KEEP + 4)
    } else {
        name
    })
}

/// `base` cut to fit `max` bytes with `~`, a hash of `id` and `.extension` after it.
fn hashed(base: &str, id: &str, extension: &str, max: usize) -> String {
    let hash = hex::encode(Sha256::digest(id.as_bytes()));
    let room = max.saturating_sub(1 + HASH_HEX + 1 + extension.len());
    let mut cut = room.min(base.len());
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{}.{extension}", &base[..cut], &hash[..HASH_HEX])
}

/// A file name from a record id: only `[A-Za-z0-9._-]`, no leading dot, never empty. Equal to
/// the id only when the id is such a name already.
fn safe_name(id: &str) -> String {
    let name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_start_matches('.');
    if name.is_empty() {
        "item".into()
    } else {
        name.to_string()
    }
}

fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".lai-tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

impl Sink for TextSink {
    fn write(&mut self, item: &Item, places: &mut Vec<Place>) -> io::Result<()> {
        self.last = None;
        let Some(text) = (self.render)(item, &self.field) else {
            return Ok(());
        };
        let path = self.path_for(item);
        write_atomically(&path, &text).map_err(|e| {
            item_error(format!(
                "cannot write {}: {e}; make the folder writable or give the output another `dir`, then rerun with --retry-failed",
                path.display()
            ))
        })?;
        self.unsynced.push(path.clone());
        self.last = Some(path.clone());
        places.push(Place::own(path, text.len() as u64));
        Ok(())
    }

    fn undo(&mut self) -> io::Result<()> {
        match self.last.take() {
            Some(path) => {
                self.unsynced.retain(|p| *p != path);
                std::fs::remove_file(&path)
            }
            None => Ok(()),
        }
    }

    /// Puts the files written since the last flush on disk, then their folders (the renames).
    fn flush(&mut self) -> io::Result<()> {
        let mut folders: Vec<&Path> = Vec::new();
        for path in &self.unsynced {
            match std::fs::File::open(path) {
                Ok(file) => file.sync_data()?,
                // Deleted meanwhile: a resume sees it missing and writes it again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            if let Some(parent) = path.parent()
                && !folders.contains(&parent)
            {
                folders.push(parent);
            }
        }
        for folder in folders {
            std::fs::File::open(folder)?.sync_all()?;
        }
        self.unsynced.clear();
        Ok(())
    }

    fn target(&self) -> String {
        self.dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Item {
        Item::new(id.into(), id.into(), b"", serde_json::Map::new())
    }

    fn file(rel: &str) -> Item {
        let mut item = record(&format!("in/{rel}"));
        item.rel_path = Some(PathBuf::from(rel));
        item
    }

    // Record ids become safe file names: no path separators, no leading dots.
    #[test]
    fn safe_names() {
        assert_eq!(safe_name("../etc/passwd"), "_etc_passwd");
        assert_eq!(safe_name("stdin:3"), "stdin_3");
        assert_eq!(safe_name(""), "item");
    }

    // Inputs that differ only in extension, and ids that differ only in unsafe characters,
    // get names of their own; a safe id and an input file keep a readable name.
    #[test]
    fn names_are_one_per_item() {
        assert_eq!(own_name(&file("d/a.md"), "txt"), Path::new("d/a.md.txt"));
        assert_ne!(
            own_name(&file("a.md"), "txt"),
            own_name(&file("a.txt"), "txt")
        );
        assert_ne!(own_name(&file("a"), "txt"), own_name(&file("a.txt"), "txt"));
        assert_eq!(own_name(&record("doc-1"), "txt"), Path::new("doc-1.txt"));
        let slash = own_name(&record("a/b"), "txt");
        assert_ne!(slash, own_name(&record("a_b"), "txt"));
        assert!(slash.to_string_lossy().starts_with("a_b~"), "{slash:?}");
        assert_eq!(
            slash,
            own_name(&record("a/b"), "txt"),
            "the same in every run"
        );
    }

    // Long names are cut with a hash: under the limit with the temporary suffix, still one
    // per item, and never equal to a name that was kept.
    #[test]
    fn long_names_are_bounded() {
        let long = "é".repeat(150);
        for item in [
            file(&format!("{long}.wav")),
            record(&long),
            record(&"a".repeat(300)),
        ] {
            let name = own_name(&item, "srt");
            let bytes = name.file_name().unwrap().len();
            assert!(
                bytes <= KEEP + 4 && bytes + ".lai-tmp".len() <= 255,
                "{bytes}"
            );
        }
        let a = own_name(&record(&"a".repeat(300)), "txt");
        let b = own_name(&record(&"a".repeat(301)), "txt");
        assert_ne!(a, b);
        assert!(a.as_os_str().len() > KEEP);
    }
}

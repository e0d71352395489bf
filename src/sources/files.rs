//! The `files` source: walks files and folders in a deterministic order and reads each file.
//!
//! Folders are walked depth-first with entries sorted by name, filtered by `glob`/`exclude`
//! (matched against the path below the folder); files named on the command line are always
//! read. Text files become one item with a `text` field; `.jsonl`/`.ndjson` files become one
//! item per record; audio and video files (by extension) become one item with a `path` field,
//! left for a stage such as `transcribe` to decode. A text file that is empty, binary or not
//! UTF-8 becomes a failed item that says so.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::Context;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::{Map, Value};

use super::jsonl::{ID_FIELD, MAX_LINE_BYTES, RecordReader, read_stdin};
use super::{Input, Source, Wanted};
use crate::config::ComponentKind;
use crate::config::schema::{Default, Diagnostics, OptionSpec, Options, Ty, opt};
use crate::pipeline::item::Item;

pub const KIND: ComponentKind<dyn Source> = ComponentKind {
    name: "files",
    doc: "Files and folders: text files (.txt, .md) become one item each, .jsonl files one item per line, audio/video files one item with their `path`; `-` reads JSONL from stdin.",
    options: OPTIONS,
    build,
};

const OPTIONS: &[OptionSpec] = &[
    opt(
        "glob",
        Ty::StrList,
        Default::Value("[\"**/*.txt\", \"**/*.md\"]"),
        "Files to take when walking a folder (paths below the folder).",
    ),
    opt(
        "exclude",
        Ty::StrList,
        Default::Value("[]"),
        "Files to skip when walking a folder.",
    ),
    opt(
        "hidden",
        Ty::Bool,
        Default::Value("false"),
        "Walk into hidden files and folders (names starting with `.`).",
    ),
    opt(
        "text_field",
        Ty::Str,
        Default::Value("\"text\""),
        "Field that receives a text file's contents.",
    ),
    opt(
        "path_field",
        Ty::Str,
        Default::Value("\"path\""),
        "Field that receives an audio or video file's path (the file is not read into the item).",
    ),
    ID_FIELD,
    MAX_LINE_BYTES,
];

/// Extensions of files that are passed on by path, for a stage to decode.
const MEDIA_EXTENSIONS: &[&str] = &[
    "wav", "wave", "mp3", "flac", "ogg", "oga", "opus", "m4a", "m4b", "mp4", "m4v", "mov", "aac",
    "webm", "mkv", "mka", "aif", "aiff", "caf", "wma",
];

struct Files {
    include: GlobSet,
    exclude: GlobSet,
    hidden: bool,
    text_field: String,
    path_field: String,
    records: RecordReader,
}

fn build(options: &Options, diag: &mut Diagnostics) -> Option<Box<dyn Source>> {
    let include = glob_set(options, "glob", diag);
    let exclude = glob_set(options, "exclude", diag);
    Some(Box::new(Files {
        include: include?,
        exclude: exclude?,
        hidden: options.bool("hidden"),
        text_field: options.str("text_field"),
        path_field: options.str("path_field"),
        records: RecordReader::from_options(options),
    }))
}

fn glob_set(options: &Options, key: &str, diag: &mut Diagnostics) -> Option<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    let mut ok = true;
    for pattern in options.str_list(key) {
        match Glob::new(&pattern) {
            Ok(g) => {
                builder.add(g);
            }
            Err(e) => {
                ok = false;
                diag.error(
                    &options.span_of(key),
                    format!(
                        "bad pattern \"{pattern}\" in `{key}` of {}: {}",
                        options.context,
                        e.kind()
                    ),
                );
            }
        }
    }
    if !ok {
        return None;
    }
    builder.build().ok()
}

/// A file to read, with the path shown to users (and used as the item id).
struct Found {
    path: PathBuf,
    id: String,
    /// Path below the folder it was found in (or the file name, for a named file).
    below: PathBuf,
}

impl Files {
    /// Calls `visit` for every file the inputs name, in order; stops when it returns false.
    fn walk(&self, inputs: &[Input], visit: &mut dyn FnMut(Found) -> bool) -> anyhow::Result<bool> {
        for input in inputs {
            let Input::Path(root) = input else { continue };
            if !root.is_dir() {
                let below = PathBuf::from(root.file_name().unwrap_or(root.as_os_str()));
                if !visit(Found {
                    path: root.clone(),
                    id: display(root),
                    below,
                }) {
                    return Ok(false);
                }
                continue;
            }
            let walker = walkdir::WalkDir::new(root)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| self.hidden || e.depth() == 0 || !is_hidden(e.file_name()));
            for entry in walker {
                let entry = entry.with_context(|| format!("walking {}", root.display()))?;
                if !entry.file_type().is_file() {
                    continue;
                }
                let below = entry.path().strip_prefix(root).unwrap_or(entry.path());
                if !self.include.is_match(below) || self.exclude.is_match(below) {
                    continue;
                }
                let found = Found {
                    path: entry.path().to_path_buf(),
                    id: display(entry.path()),
                    below: below.to_path_buf(),
                };
                if !visit(found) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Reads the files one path input names; false if `emit` asked to stop.
    fn read_path(
        &self,
        input: &Input,
        wanted: Wanted,
        emit: &mut dyn FnMut(Item) -> bool,
    ) -> anyhow::Result<bool> {
        let mut failure = None;
        let going = self.walk(std::slice::from_ref(input), &mut |found| {
            if !is_jsonl(&found.path) && !wanted(&found.id) {
                return true;
            }
            if is_media(&found.path) {
                return emit(self.media_item(found));
            }
            if !is_jsonl(&found.path) {
                return emit(self.text_item(found));
            }
            let file = match File::open(&found.path) {
                Ok(f) => f,
                Err(e) => {
                    let reason = format!("cannot open file: {e}");
                    return emit(Item::failed(found.id.clone(), found.id, b"", reason));
                }
            };
            let mut reader = BufReader::with_capacity(256 * 1024, file);
            match self
                .records
                .read_records(&mut reader, &found.id, wanted, emit)
            {
                Ok(going) => going,
                Err(e) => {
                    failure = Some(anyhow::Error::new(e).context(format!("reading {}", found.id)));
                    false
                }
            }
        })?;
        failure.map_or(Ok(going), Err)
    }

    fn text_item(&self, found: Found) -> Item {
        let origin = found.id.clone();
        let below = found.below;
        let bytes = match std::fs::read(&found.path) {
            Ok(b) => b,
            Err(e) => {
                return Item::failed(found.id, origin, b"", format!("cannot read file: {e}"));
            }
        };
        let mut item = match decode_text(&bytes) {
            Ok(text) => {
                let mut fields = Map::new();
                fields.insert(self.text_field.clone(), Value::String(text.to_string()));
                Item::new(found.id, origin, &bytes, fields)
            }
            Err(why) => Item::failed(found.id, origin, &bytes, why),
        };
        item.rel_path = Some(below);
        item
    }

    /// An audio or video file: its path, and the sha256 of its bytes, streamed.
    fn media_item(&self, found: Found) -> Item {
        let origin = found.id.clone();
        let mut item = match crate::models::sha256_file(&found.path) {
            Ok(sha) => {
                let mut fields = Map::new();
                let path = found.path.to_string_lossy().into_owned();
                fields.insert(self.path_field.clone(), Value::String(path));
                Item::hashed(found.id, origin, sha, fields)
            }
            Err(e) => Item::failed(found.id, origin, b"", format!("{e:#}")),
        };
        item.rel_path = Some(found.below);
        item
    }
}

fn is_media(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MEDIA_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_jsonl(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "ndjson")
    )
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with('.'))
}

fn display(path: &Path) -> String {
    let shown = path.display().to_string();
    shown
        .strip_prefix("./")
        .map(str::to_string)
        .unwrap_or(shown)
}

/// Decodes a text file, or says clearly why it is not one.
pub fn decode_text(bytes: &[u8]) -> Result<&str, String> {
    if bytes.is_empty() {
        return Err("file is empty (0 bytes); there is no text to process".into());
    }
    let head = &bytes[..bytes.len().min(8192)];
    if let Some(at) = head.iter().position(|&b| b == 0) {
        return Err(format!(
            "looks like a binary file, not text (NUL byte at offset {at}); exclude it with `exclude` in [input]"
        ));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not valid UTF-8 text (invalid byte at offset {}); convert it first, e.g. `iconv -f latin1 -t utf-8`",
            e.valid_up_to()
        )
    })
}

impl Source for Files {
    fn read(
        &self,
        inputs: &[Input],
        wanted: Wanted,
        emit: &mut dyn FnMut(Item) -> bool,
    ) -> anyhow::Result<()> {
        for input in inputs {
            let going = match input {
                Input::Stdin => read_stdin(&self.records, wanted, emit)?,
                Input::Path(_) => self.read_path(input, wanted, emit)?,
            };
            if !going {
                break;
            }
        }
        Ok(())
    }

    fn count(&self, inputs: &[Input]) -> Option<u64> {
        let mut n = 0u64;
        let mut countable = true;
        self.walk(inputs, &mut |found| {
            countable &= !is_jsonl(&found.path);
            n += 1;
            countable
        })
        .ok()?;
        countable.then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each kind of non-text file gets a message that says what is wrong.
    #[test]
    fn decode_errors() {
        assert!(decode_text(b"").unwrap_err().contains("empty"));
        assert!(decode_text(b"ab\0cd").unwrap_err().contains("binary"));
        assert!(decode_text(b"caf\xe9").unwrap_err().contains("offset 3"));
        assert_eq!(decode_text(b"\xEF\xBB\xBFhi").unwrap(), "hi");
    }
}

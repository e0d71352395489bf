//! The `files` source: walks files and folders in a deterministic order and reads each file.
//!
//! Folders are walked depth-first with entries sorted by name, filtered by `glob`/`exclude`
//! (matched against the path below the folder); files named on the command line are always
//! read. Text files become one item with a `text` field; `.jsonl`/`.ndjson` files become one
//! item per record, `.csv`/`.tsv` files one item per row (`rows`); PDF, DOCX, HTML and e-mail
//! files one item with their text, and a mail's attachments one each (`documents`); audio and
//! video files (by extension) become one item with a `path` field,
//! left for a stage such as `transcribe` to decode. A text file that is empty, binary or not
//! UTF-8 becomes a failed item that says so.
//!
//! An item's id is its path below the input folder, so no spelling of the folder changes it.
//! The walk passes over the run's outputs (`fence`), follows a symlink only while it stays
//! inside the folder, and turns anything it cannot follow (a dangling link, a loop, an
//! unreadable folder) into one failed item: a walk never ends the run.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::{Map, Value};

use super::documents::{self, Document, decode_text};
use super::jsonl::{ID_FIELD, MAX_LINE_BYTES, RecordReader, read_file, read_stdin};
use super::ocr::Ocr;
use super::rows::{self, RowReader};
use super::unique::{Place, Unique, display};
use crate::component::fence::{self, Fence};
use crate::component::{Input, Source, Wanted};
use crate::item::Item;
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

pub const KIND: ComponentKind<dyn Source> = ComponentKind {
    name: "files",
    doc: "Files and folders: text files (.txt, .md) become one item each, .jsonl files one item per line, .csv/.tsv files one item per row (fields named by the header row), PDF/DOCX/HTML/.eml documents one item each with their text (a mail's attachments one more each, `parent` = the mail), audio/video files one item with their `path`; `-` reads JSONL from stdin.",
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
    opt(
        "text_columns",
        Ty::StrList,
        Default::Value("[]"),
        "For .csv/.tsv/.parquet files: columns moved, joined one per line, into the text field (e.g. [\"subject\", \"body\"]), so that `redact` covers them; every other column is a field of the row's item as it is.",
    ),
    opt(
        "ocr",
        Ty::Choice(&["auto", "off"]),
        Default::Value("\"auto\""),
        "Read scanned PDF pages and image files (.png .jpg .tif .bmp) by OCR (Tesseract; scripts/deps.sh installs it): \"auto\" where a page has no text layer, \"off\" to fail them instead.",
    ),
    opt(
        "ocr_language",
        Ty::Str,
        Default::Value("\"eng\""),
        "Tesseract's language(s) for OCR: `eng`, `deu`, `deu+eng` (each needs tesseract-ocr-LANG installed).",
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
    rows: RowReader,
    /// Scanned pages and images are read by OCR; `None`: OCR is off.
    ocr: Option<Ocr>,
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
        rows: RowReader {
            id_field: options.str("id_field"),
            text_field: options.str("text_field"),
            text_columns: options.str_list("text_columns"),
            max_row_bytes: options.usize("max_line_bytes"),
        },
        ocr: (options.str("ocr") == "auto").then(|| Ocr::new(options.str("ocr_language"))),
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

/// A file to read.
struct Found {
    path: PathBuf,
    /// The item id: the path below the input folder (a named file's name), whatever
    /// spelling of the folder was given.
    id: String,
    /// The path as walked, for messages.
    origin: String,
    /// Path below the folder it was found in (or the file name, for a named file).
    below: PathBuf,
}

/// What the walk reached: a file to read, or a path it could not follow.
enum Walked {
    File(Found),
    /// A dangling or outside-pointing symlink, a loop, an unreadable folder: one failed item.
    Failed {
        id: String,
        origin: String,
        reason: String,
    },
}

impl Files {
    /// Whether a file below a folder is taken, by `glob` and `exclude`.
    fn takes(&self, below: &Path) -> bool {
        self.include.is_match(below) && !self.exclude.is_match(below)
    }

    /// Calls `visit` for every file one input names, in order, and for every path below it
    /// that cannot be followed; stops when `visit` returns false. A file reached a second time
    /// (`unique`) and the run's outputs are passed over.
    fn walk(
        &self,
        root: &Path,
        outputs: &Fence,
        unique: &mut Unique,
        visit: &mut dyn FnMut(Walked, u32, &mut Unique) -> bool,
    ) -> bool {
        let origin = display(root);
        let meta = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                let reason = format!("cannot read {origin}: {e}");
                let failed = Walked::Failed {
                    id: origin.clone(),
                    origin: origin.clone(),
                    reason,
                };
                let place = unique.place(Place::File(origin));
                return visit(failed, place, unique);
            }
        };
        if !meta.is_dir() {
            if !unique.first_visit(fence::key(&meta)) {
                return true;
            }
            let below = PathBuf::from(root.file_name().unwrap_or(root.as_os_str()));
            let found = Found {
                path: root.to_path_buf(),
                id: below.to_string_lossy().into_owned(),
                origin: origin.clone(),
                below,
            };
            let place = unique.place(Place::File(origin));
            return visit(Walked::File(found), place, unique);
        }
        let place = unique.place(Place::Folder(root.to_path_buf()));
        // The walk is fenced in here: a symlink is followed only while it stays inside.
        let inside = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let skip = outputs.existing();
        let mut entries = walkdir::WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter();
        while let Some(next) = entries.next() {
            let entry = match next {
                Ok(entry) => entry,
                Err(e) => {
                    if let Some(failed) = self.walk_error(root, &e)
                        && !visit(failed, place, unique)
                    {
                        return false;
                    }
                    continue;
                }
            };
            if entry.depth() == 0 {
                continue;
            }
            let is_dir = entry.file_type().is_dir();
            let below = entry.path().strip_prefix(root).unwrap_or(entry.path());
            if !self.hidden && is_hidden(entry.file_name()) {
                if is_dir {
                    entries.skip_current_dir();
                }
                continue;
            }
            if entry.path_is_symlink() {
                let target = std::fs::canonicalize(entry.path());
                if !target.as_ref().is_ok_and(|t| t.starts_with(&inside)) {
                    if is_dir {
                        entries.skip_current_dir();
                    }
                    if !is_dir && !self.takes(below) {
                        continue;
                    }
                    let to = target.map_or_else(|e| e.to_string(), |t| t.display().to_string());
                    let failed = Walked::Failed {
                        id: id_of(below),
                        origin: display(entry.path()),
                        reason: format!(
                            "is a symbolic link to {to}, outside the input folder {}; it was not read. Give the target as an input of its own if it is meant to be read",
                            display(root)
                        ),
                    };
                    if !visit(failed, place, unique) {
                        return false;
                    }
                    continue;
                }
            }
            // One stat per entry: how outputs and files reached twice are recognised.
            let key = match entry.metadata() {
                Ok(m) => fence::key(&m),
                Err(e) => {
                    if let Some(failed) = self.walk_error(root, &e)
                        && !visit(failed, place, unique)
                    {
                        return false;
                    }
                    continue;
                }
            };
            if skip.contains(&key) {
                if is_dir {
                    entries.skip_current_dir();
                }
                continue;
            }
            // FIFOs, sockets and devices are never read (a FIFO would block the run).
            if !entry.file_type().is_file() || !self.takes(below) {
                continue;
            }
            if !unique.first_visit(key) {
                continue;
            }
            let found = Found {
                path: entry.path().to_path_buf(),
                id: id_of(below),
                origin: display(entry.path()),
                below: below.to_path_buf(),
            };
            if !visit(Walked::File(found), place, unique) {
                return false;
            }
        }
        true
    }

    /// A path below `root` the walk could not follow, as a failed item; None for one that
    /// would not have been taken anyway (a hidden name, a broken link not matching `glob`).
    fn walk_error(&self, root: &Path, e: &walkdir::Error) -> Option<Walked> {
        let path = e.path().unwrap_or(root);
        let below = path.strip_prefix(root).unwrap_or(path);
        let hidden = below.components().any(|c| is_hidden(c.as_os_str()));
        if !self.hidden && hidden {
            return None;
        }
        let reason = if let Some(ancestor) = e.loop_ancestor() {
            format!(
                "is a symbolic link loop (it leads back to {}); it was not walked",
                display(ancestor)
            )
        } else {
            let io = e.io_error();
            let dangling = io.is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if dangling {
                if !self.takes(below) {
                    return None;
                }
                "is a symbolic link to a file that does not exist".to_string()
            } else {
                let why = io.map_or_else(|| e.to_string(), ToString::to_string);
                format!("cannot be read ({why}); check its permissions")
            }
        };
        let id = if below.as_os_str().is_empty() {
            display(root)
        } else {
            id_of(below)
        };
        Some(Walked::Failed {
            id,
            origin: display(path),
            reason,
        })
    }

    /// Reads the files one path input names; false if `emit` asked to stop.
    fn read_path(
        &self,
        root: &Path,
        outputs: &Fence,
        unique: &mut Unique,
        wanted: Wanted,
        emit: &mut dyn FnMut(Item) -> bool,
    ) -> bool {
        let mut visit = |walked: Walked, place: u32, unique: &mut Unique| -> bool {
            let found = match walked {
                Walked::Failed { id, origin, reason } => {
                    if !wanted(&id) {
                        return true;
                    }
                    return emit(unique.admit(Item::failed(id, origin, b"", reason), place));
                }
                Walked::File(found) => found,
            };
            // A mail's attachments are items of their own, each wanted or not by its own id.
            if !holds_records(&found.path)
                && !documents::holds_attachments(&found.path)
                && !wanted(&found.id)
            {
                return true;
            }
            if is_media(&found.path) {
                return emit(unique.admit(self.media_item(found), place));
            }
            if documents::is_document(&found.path) {
                return self.document_items(found, &mut |item| {
                    !wanted(&item.id) || emit(unique.admit(item, place))
                });
            }
            if !holds_records(&found.path) {
                return emit(unique.admit(self.text_item(found), place));
            }
            let lines = unique.place(Place::Lines(found.origin.clone()));
            if rows::is_parquet(&found.path) {
                return self.rows.read_parquet(
                    &found.path,
                    (&found.id, &found.origin),
                    wanted,
                    &mut |item| emit(unique.admit(item, lines)),
                );
            }
            if let Some(delimiter) = rows::delimiter(&found.path) {
                return self.rows.read_file(
                    &found.path,
                    delimiter,
                    (&found.id, &found.origin),
                    wanted,
                    &mut |item| emit(unique.admit(item, lines)),
                );
            }
            read_file(
                &self.records,
                &found.path,
                (&found.id, &found.origin),
                wanted,
                &mut |item| emit(unique.admit(item, lines)),
            )
        };
        self.walk(root, outputs, unique, &mut visit)
    }

    fn text_item(&self, found: Found) -> Item {
        let origin = found.origin;
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

    /// A PDF, DOCX, HTML or e-mail file: its text and what it says of itself; an e-mail's
    /// attachments follow it as items of their own (`parent`: the mail's id). False if `emit`
    /// asked to stop.
    fn document_items(&self, found: Found, emit: &mut dyn FnMut(Item) -> bool) -> bool {
        if documents::is_mailbox(&found.path) {
            return self.mailbox_items(found, emit);
        }
        let bytes = match std::fs::read(&found.path) {
            Ok(b) => b,
            Err(e) => {
                let why = format!("cannot read file: {e}");
                return emit(Item::failed(found.id, found.origin, b"", why));
            }
        };
        let place = (found.id, found.origin, Some(found.below));
        self.document(&found.path, place, &bytes, None, emit)
    }

    /// An mbox file: each message an item (`BOX/N.eml`) with its attachments after it, read and
    /// passed on message by message, so a large mailbox is never in memory whole.
    fn mailbox_items(&self, found: Found, emit: &mut dyn FnMut(Item) -> bool) -> bool {
        let file = match std::fs::File::open(&found.path) {
            Ok(f) => f,
            Err(e) => {
                let why = format!("cannot read file: {e}");
                return emit(Item::failed(found.id, found.origin, b"", why));
            }
        };
        let messages =
            mail_parser::mailbox::mbox::MessageIterator::new(std::io::BufReader::new(file));
        let mut any = false;
        for (n, message) in messages.enumerate() {
            any = true;
            let name = format!("{}.eml", n + 1);
            let (id, origin) = (
                format!("{}/{name}", found.id),
                format!("{}/{name}", found.origin),
            );
            let go_on = match message {
                Ok(message) => {
                    let place = (id, origin, None);
                    self.document(Path::new(&name), place, message.contents(), None, emit)
                }
                Err(e) => {
                    let why = format!("the mailbox cannot be read on from message {}: {e}", n + 1);
                    emit(Item::failed(id, origin, b"", why));
                    false
                }
            };
            if !go_on {
                return false;
            }
        }
        if !any {
            let why = "the mailbox holds no message (an mbox starts each with a `From ` line)";
            return emit(Item::failed(found.id, found.origin, b"", why.into()));
        }
        true
    }

    /// One document's item (id, origin, and the path below the folder for a file of its own;
    /// none for what lies inside another file), then its attachments' (up to `MAX_NESTING`
    /// mails deep). False if `emit` asked to stop.
    fn document(
        &self,
        name: &Path,
        (id, origin, below): (String, String, Option<PathBuf>),
        bytes: &[u8],
        parent: Option<(&str, usize)>,
        emit: &mut dyn FnMut(Item) -> bool,
    ) -> bool {
        let read = if documents::is_document(name) {
            documents::read(name, bytes, self.ocr.as_ref())
        } else if is_text_name(name) {
            // Mail carries text with CRLF line ends; the text is the same with LF.
            decode_text(bytes).map(|text| Document {
                text: text.replace("\r\n", "\n"),
                mime: "text/plain",
                ..Document::default()
            })
        } else {
            Err(
                "an attachment lai cannot read (not text, PDF, DOCX, HTML, e-mail or an image)"
                    .to_string(),
            )
        };
        let mut document = match read {
            Ok(d) => d,
            Err(why) => {
                let mut item = Item::failed(id, origin, bytes, why);
                item.rel_path = below;
                return emit(item);
            }
        };
        let attachments = std::mem::take(&mut document.attachments);
        let mut fields = document.fields(&self.text_field);
        if let Some((parent, _)) = parent {
            fields.insert("parent".into(), parent.into());
        }
        let mut item = Item::new(id.clone(), origin.clone(), bytes, fields);
        item.rel_path = below;
        if !emit(item) {
            return false;
        }
        let depth = parent.map_or(1, |(_, depth)| depth + 1);
        for (n, attachment) in attachments.into_iter().enumerate() {
            let file = format!("{}-{}", n + 1, safe_name(&attachment.name));
            let (id_n, origin_n) = (format!("{id}/{file}"), format!("{origin}/{file}"));
            let go_on = if depth > MAX_NESTING {
                let why =
                    format!("an attachment nested more than {MAX_NESTING} mails deep is not read");
                emit(Item::failed(id_n, origin_n, &attachment.bytes, why))
            } else {
                // No path of its own: it lies inside the mail (so resume never takes it for a
                // renamed file, and per-item outputs are named by its id).
                let reader = attachment.reader_name();
                let place = (id_n, origin_n, None);
                self.document(
                    Path::new(&reader),
                    place,
                    &attachment.bytes,
                    Some((&id, depth)),
                    emit,
                )
            };
            if !go_on {
                return false;
            }
        }
        true
    }

    /// An audio or video file: its path, and the sha256 of its bytes, streamed.
    fn media_item(&self, found: Found) -> Item {
        let origin = found.origin;
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

/// An item id from a path below an input folder: `/`-separated, whatever the root's spelling.
fn id_of(below: &Path) -> String {
    below.to_string_lossy().into_owned()
}

fn is_media(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MEDIA_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Mails attached to mails are read this deep.
const MAX_NESTING: usize = 3;

/// Files whose name says they are plain text (an e-mail's attachments).
fn is_text_name(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["txt", "md", "csv", "tsv", "json", "xml", "log"].contains(&e.to_ascii_lowercase().as_str())
    })
}

/// An attachment's name as one safe path component: no folders, no `..`, no control characters.
fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    let clean = clean.trim().trim_start_matches('.');
    if clean.is_empty() {
        "attachment".into()
    } else {
        clean.chars().take(120).collect()
    }
}

fn is_jsonl(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "ndjson")
    )
}

/// Files that hold many records (one item each): JSONL, CSV, TSV, Parquet.
fn holds_records(path: &Path) -> bool {
    is_jsonl(path) || rows::delimiter(path).is_some() || rows::is_parquet(path)
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with('.'))
}

impl Source for Files {
    fn read(
        &self,
        inputs: &[Input],
        wanted: Wanted,
        emit: &mut dyn FnMut(Item) -> bool,
    ) -> anyhow::Result<()> {
        let mut unique = Unique::default();
        for input in inputs {
            let going = match input {
                Input::Stdin => {
                    let place = unique.place(Place::Lines("stdin".into()));
                    read_stdin(&self.records, wanted, &mut |item| {
                        emit(unique.admit(item, place))
                    })?
                }
                Input::Path(root, outputs) => {
                    self.read_path(root, outputs, &mut unique, wanted, emit)
                }
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
        let mut unique = Unique::default();
        for input in inputs {
            let Input::Path(root, outputs) = input else {
                continue;
            };
            self.walk(root, outputs, &mut unique, &mut |walked, _, _| {
                countable &= !matches!(&walked, Walked::File(found)
                    if holds_records(&found.path) || documents::is_document(&found.path));
                n += 1;
                countable
            });
        }
        countable.then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An attachment's name cannot climb out of its mail's folder or hide as a dotfile.
    #[test]
    fn attachment_names_stay_one_component() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\Users\\x\\scan.pdf"), "scan.pdf");
        assert_eq!(safe_name(".."), "attachment");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        assert_eq!(safe_name("a\nb.txt"), "a_b.txt");
        assert_eq!(safe_name(""), "attachment");
        assert_eq!(safe_name(&"x".repeat(500)).len(), 120);
    }

    // Each kind of non-text file gets a message that says what is wrong.
    #[test]
    fn decode_errors() {
        assert!(decode_text(b"").unwrap_err().contains("empty"));
        assert!(decode_text(b"ab\0cd").unwrap_err().contains("binary"));
        assert!(decode_text(b"caf\xe9").unwrap_err().contains("offset 3"));
        assert_eq!(decode_text(b"\xEF\xBB\xBFhi").unwrap(), "hi");
    }
}

//! One item per id and one item per file, decided the same way on every run.
//!
//! Sources read in a deterministic order, so "first wins" is stable: the first item with an id
//! keeps it; every later one fails (stage "input") with "duplicate id `X`, first seen at
//! ORIGIN" and is recorded under `X#2`, `X#3`..., so it never replaces the first one's results
//! in the ledger or the outputs. The same file reached twice (given as `docs` and
//! `/abs/docs`, or through a symlink) is read once; later sightings are passed over.
//!
//! Memory grows with the number of items, so it is kept small: an id is remembered by 16
//! bytes of its sha256 (a collision cannot be crafted, unlike with a fast hash) plus where it
//! was first seen as two numbers; origins are rebuilt from a short list of streams.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::component::fence::FileKey;
use crate::item::Item;

/// Where items come from: one entry per input folder, named file or JSONL stream.
pub enum Place {
    /// A folder input: a file item's origin is this path joined with its id.
    Folder(PathBuf),
    /// A file named on the command line: the origin is the path.
    File(String),
    /// JSONL records: origins are `NAME:LINE`.
    Lines(String),
}

#[derive(Clone, Copy)]
struct First {
    place: u32,
    line: u32,
    /// How many items had this id so far.
    seen: u32,
}

#[derive(Default)]
pub struct Unique {
    ids: HashMap<u128, First>,
    places: Vec<Place>,
    files: HashSet<FileKey>,
}

impl Unique {
    /// Registers where the next items come from; returns its handle for `admit`.
    pub fn place(&mut self, place: Place) -> u32 {
        self.places.push(place);
        u32::try_from(self.places.len() - 1).unwrap_or(u32::MAX)
    }

    /// True the first time a file is reached; false when this same file was read already.
    pub fn first_visit(&mut self, file: FileKey) -> bool {
        self.files.insert(file)
    }

    /// Passes the first item with an id as it is; a later one becomes a failed duplicate.
    pub fn admit(&mut self, mut item: Item, place: u32) -> Item {
        let line = match self.places.get(place as usize) {
            Some(Place::Lines(name)) => item
                .origin
                .strip_prefix(name.as_str())
                .and_then(|rest| rest.strip_prefix(':'))
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            _ => 0,
        };
        let here = First {
            place,
            line,
            seen: 1,
        };
        let key = digest(&item.id);
        let first = match self.ids.get_mut(&key) {
            None => {
                self.ids.insert(key, here);
                return item;
            }
            Some(first) => {
                first.seen += 1;
                *first
            }
        };
        let original = std::mem::take(&mut item.id);
        let mut renamed = format!("{original}#{}", first.seen);
        while self.ids.contains_key(&digest(&renamed)) {
            renamed.push('+');
        }
        self.ids.insert(digest(&renamed), here);
        item.id = renamed;
        item.fields.clear();
        item.fail(
            "input",
            format!(
                "duplicate id `{original}`, first seen at {}; this one is recorded as `{}` and not processed. Give every record a unique id",
                self.origin(first, &original),
                item.id
            ),
        );
        item
    }

    fn origin(&self, first: First, id: &str) -> String {
        match self.places.get(first.place as usize) {
            Some(Place::Folder(root)) => display(&root.join(id)),
            Some(Place::File(path)) => path.clone(),
            Some(Place::Lines(name)) => format!("{name}:{}", first.line),
            None => "an earlier item".into(),
        }
    }
}

fn digest(id: &str) -> u128 {
    let hash = Sha256::digest(id.as_bytes());
    let mut head = [0u8; 16];
    head.copy_from_slice(&hash[..16]);
    u128::from_le_bytes(head)
}

/// A path for messages and origins, without a leading `./`.
pub(super) fn display(path: &Path) -> String {
    let shown = path.display().to_string();
    shown
        .strip_prefix("./")
        .map(str::to_string)
        .unwrap_or(shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn item(id: &str, origin: &str) -> Item {
        Item::new(id.into(), origin.into(), b"", Map::new())
    }

    // The first item keeps its id; a later one fails, names where the first was, and gets an
    // id of its own that no other item has.
    #[test]
    fn later_duplicates_fail_under_ids_of_their_own() {
        let mut unique = Unique::default();
        let lines = unique.place(Place::Lines("t.jsonl".into()));
        assert!(
            unique
                .admit(item("a", "t.jsonl:1"), lines)
                .failure
                .is_none()
        );
        assert!(
            unique
                .admit(item("a#2", "t.jsonl:2"), lines)
                .failure
                .is_none()
        );
        let dup = unique.admit(item("a", "t.jsonl:3"), lines);
        assert_eq!(dup.id, "a#2+");
        let reason = &dup.failure.unwrap().reason;
        assert!(
            reason.contains("duplicate id `a`, first seen at t.jsonl:1"),
            "{reason}"
        );
        let folder = unique.place(Place::Folder("docs".into()));
        assert!(
            unique
                .admit(item("x.txt", "docs/x.txt"), folder)
                .failure
                .is_none()
        );
        let other = unique.place(Place::Folder("more".into()));
        let dup = unique.admit(item("x.txt", "more/x.txt"), other);
        assert!(
            dup.failure
                .unwrap()
                .reason
                .contains("first seen at docs/x.txt")
        );
    }
}

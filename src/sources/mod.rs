//! Sources: where items come from. The registry slice `SOURCES` and the `Source` trait.
//!
//! A source runs on its own thread and hands items to `emit` one at a time, in a deterministic
//! order; `emit` blocks while the pipeline is full (backpressure) and returns false when the run
//! is stopping. A problem with one input (unreadable file, malformed line) becomes a failed item,
//! never an error of the whole source; only an I/O failure of the stream itself (stdin breaks)
//! ends the source with an error.
//!
//! Every source keeps the run's inputs apart from its outputs (`fence`) and gives each id to
//! one item only (`unique`).

pub mod fence;
pub mod files;
pub mod jsonl;
mod unique;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

pub use fence::Fence;

use crate::config::ComponentKind;
use crate::pipeline::item::Item;

/// One command-line input.
#[derive(Clone, Debug)]
pub enum Input {
    /// `-`: JSONL records on standard input.
    Stdin,
    /// A file or folder, with the run's outputs that reading it must pass over.
    Path(PathBuf, Arc<Fence>),
}

/// Which item ids a run takes (a shard's): the others are passed over, files among them unread.
pub type Wanted<'a> = &'a dyn Fn(&str) -> bool;

pub trait Source: Send + Sync {
    /// Reads every input in order, calling `emit` per item that `wanted` takes; stops early
    /// when `emit` says so.
    fn read(
        &self,
        inputs: &[Input],
        wanted: Wanted,
        emit: &mut dyn FnMut(Item) -> bool,
    ) -> anyhow::Result<()>;

    /// How many items `read` will produce, when that is cheap to know (for progress ETA).
    fn count(&self, _inputs: &[Input]) -> Option<u64> {
        None
    }
}

/// Every source kind, selected by `[input] kind = "..."`.
pub static SOURCES: &[ComponentKind<dyn Source>] = &[files::KIND, jsonl::KIND];

/// Text from a file name or an id made safe to print on a terminal: control characters (a
/// newline that forges a second message, an escape sequence that rewrites the screen) and
/// bidirectional overrides are shown escaped (`\n`, `\x1b`, `\u{202e}`); everything else,
/// other scripts included, is shown as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if unsafe_char(c) && (c as u32) < 0x80 => {
                shown.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if unsafe_char(c) => shown.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Control characters and direction overrides are escaped; plain and non-Latin text is not.
    #[test]
    fn printable_escapes_what_a_terminal_would_obey() {
        assert_eq!(printable("docs/ünï.txt"), "docs/ünï.txt");
        assert_eq!(printable("a\nerror: b"), "a\\nerror: b");
        assert_eq!(printable("x\u{1b}[2Jy\u{7f}"), "x\\x1b[2Jy\\x7f");
        assert_eq!(printable("\u{202e}txt.exe"), "\\u{202e}txt.exe");
    }
}

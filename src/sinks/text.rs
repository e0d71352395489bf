//! The `text` output: one file per item holding one field, mirroring the input tree.
//!
//! Each file is written under a temporary name and renamed into place, so a crash leaves
//! either no file or a complete one, never a torn one.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{OpenContext, Place, Sink, SinkSpec};
use crate::config::ComponentKind;
use crate::config::schema::{Default, Diagnostics, OptionSpec, Options, Ty, opt};
use crate::pipeline::item::Item;

pub const KIND: ComponentKind<dyn SinkSpec> = ComponentKind {
    name: "text",
    doc: "One file per item holding one field, named after the input file (or the record id).",
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
        "File extension of the written files.",
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
}

impl TextSink {
    fn path_for(&self, item: &Item) -> PathBuf {
        let relative = match &item.rel_path {
            Some(p) => p.with_extension(&self.extension),
            None => PathBuf::from(format!("{}.{}", safe_name(&item.id), self.extension)),
        };
        self.dir.join(relative)
    }
}

/// A file name from a record id: only `[A-Za-z0-9._-]`, no leading dot, bounded length.
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
        .take(150)
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
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

impl Sink for TextSink {
    fn write(&mut self, item: &Item, places: &mut Vec<Place>) -> io::Result<()> {
        let Some(text) = (self.render)(item, &self.field) else {
            return Ok(());
        };
        let path = self.path_for(item);
        write_atomically(&path, &text)?;
        places.push(Place { path, range: None });
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn target(&self) -> String {
        self.dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Record ids become safe file names: no path separators, no leading dots.
    #[test]
    fn safe_names() {
        assert_eq!(safe_name("../etc/passwd"), "_etc_passwd");
        assert_eq!(safe_name("stdin:3"), "stdin_3");
        assert_eq!(safe_name(""), "item");
    }
}

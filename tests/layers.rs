//! The crate's dependencies run one way (see `src/main.rs`, "Layout"): read from the code, every
//! `use` and path of `src/` (tests aside) goes to a module of the same layer or a lower one, and
//! no files import each other in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules by layer, lowest first; a module may use its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["item", "options", "device", "models", "confine"],
    &["component"],
    &["pipeline", "ledger", "engines", "audio"],
    &["sources", "stages", "sinks"],
    &["config", "app", "cli", ""],
];

type Module = Vec<String>;

#[test]
fn imports_run_one_way() {
    let files = modules(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path());
    let edges = imports(&files);
    let layer = |m: &Module| {
        let top = m.first().map_or("", String::as_str);
        LAYERS
            .iter()
            .position(|l| l.contains(&top))
            .unwrap_or_else(|| panic!("module `{top}` is in no layer of this test; add it"))
    };
    let mut upward = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if layer(to) > layer(from) {
                upward.push(format!("{} -> {}", from.join("/"), to.join("/")));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a lower layer to a higher one: {upward:#?}"
    );
    let circles = circles(&files.keys().cloned().collect::<Vec<_>>(), &edges);
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

// The reader of the code finds what is there: a circle and an upward import are seen.
#[test]
fn the_reader_sees_circles_and_layers() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("stages")).unwrap();
    std::fs::create_dir_all(src.join("engines")).unwrap();
    std::fs::write(src.join("main.rs"), "mod engines; mod item; mod stages;").unwrap();
    // A quote in a character literal, a raw string and a test-only function hide nothing.
    std::fs::write(
        src.join("item.rs"),
        "fn q() -> char { '\"' }\nconst P: &str = r#\"a\"b\"#;\n#[cfg(test)]\nfn t() { crate::engines::x() }\nuse crate::stages::Stage;",
    )
    .unwrap();
    // A parent that calls its child by a relative path, a child that imports its parent.
    std::fs::write(src.join("engines/mod.rs"), "pub mod w;\nfn f() { w::g() }").unwrap();
    std::fs::write(src.join("engines/w.rs"), "use super::Options;").unwrap();
    std::fs::write(
        src.join("stages/mod.rs"),
        "pub mod a;\nuse crate::{item::{Item, X}};\nmod hooks { fn f() { super::a::g() } }",
    )
    .unwrap();
    std::fs::write(
        src.join("stages/a.rs"),
        "use super::super::item::Item;\n#[cfg(test)]\nuse crate::cli;",
    )
    .unwrap();
    let files = modules(src);
    let edges = imports(&files);
    let m = |s: &str| -> Module {
        s.split('/')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(edges[&m("item")], BTreeSet::from([m("stages")]));
    assert_eq!(edges[&m("stages/a")], BTreeSet::from([m("item")]));
    assert_eq!(
        edges[&m("stages")],
        BTreeSet::from([m("item"), m("stages/a")])
    );
    assert_eq!(edges[&m("engines")], BTreeSet::from([m("engines/w")]));
    let circles = circles(&files.keys().cloned().collect::<Vec<_>>(), &edges);
    assert_eq!(
        circles,
        vec![
            vec![m("engines"), m("engines/w")],
            vec![m("item"), m("stages"), m("stages/a")]
        ]
    );
}

/// Every module file under `src`, by module path (`stages/llm` for `stages/llm/mod.rs`).
fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "main")) {
                module.pop();
            }
            files.insert(module, std::fs::read_to_string(&path).unwrap());
        }
    }
    files
}

/// Which modules each module's code names (`use` trees and paths), tests left out.
fn imports(files: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut edges = BTreeMap::new();
    for (module, text) in files {
        let code = without_tests(&strip(text));
        let code = code.as_str();
        let inline = inline_modules(code);
        // Each path with how many inline modules (`mod tests { .. }`) it sits in: a `super`
        // there steps out of those first.
        let mut paths: Vec<(String, usize)> = Vec::new();
        // A path that starts with a child module's name is relative to this module.
        let relative = |path: &str| {
            let first = path.split("::").next().unwrap_or_default();
            let mut child = module.clone();
            child.push(first.to_string());
            if files.contains_key(&child) {
                format!("self::{path}")
            } else {
                path.to_string()
            }
        };
        let depth = |at: usize| inline.iter().filter(|r| r.contains(&at)).count();
        let glued = |at: usize| {
            code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        };
        for (at, _) in code.match_indices("use ") {
            if !glued(at)
                && let Some(end) = code[at..].find(';')
            {
                let tree = &code[at + 4..at + end];
                paths.extend(expand(tree).into_iter().map(|p| (relative(&p), depth(at))));
            }
        }
        // A module names its own children without a prefix (`pack::hear`, `pub use fence::X`).
        let children: Vec<String> = files
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| format!("{}::", m[module.len()]))
            .collect();
        let starts: Vec<&str> = ["crate::", "super::", "self::"]
            .into_iter()
            .chain(children.iter().map(String::as_str))
            .collect();
        for start in starts {
            for (at, _) in code.match_indices(start) {
                if glued(at) {
                    continue;
                }
                let end = code[at..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .map_or(code.len(), |e| at + e);
                // `crate::{..}` opens a use tree, read above.
                if !code[at..end].ends_with("::") {
                    paths.push((relative(&code[at..end]), depth(at)));
                }
            }
        }
        let targets: BTreeSet<Module> = paths
            .iter()
            .filter_map(|(p, depth)| resolve(files, module, p, *depth))
            .filter(|t| t != module)
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

/// Code without comments and the contents of strings and character literals.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !word_before(&chars, i) {
            // r"..." or r#"..."#: ends at a quote followed by as many hashes.
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            i += 1 + hashes + 1;
            while i < chars.len()
                && !(chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|c| *c == '#'))
            {
                i += 1;
            }
            i += 1 + hashes;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A character literal ('"', '\n', '\u{..}'), not a lifetime.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether the character before `i` continues a word (then `r` is part of a name).
fn word_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Code without the items marked `#[cfg(test)]` (a `mod tests { .. }`, a test-only `fn` or
/// `use`): what tests use is not a dependency of the program.
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its first `;` outside braces, or where its first brace closes.
        let mut depth = 0;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let (prefix, inner) = (
        &tree[..open],
        &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())],
    );
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// The byte ranges of inline modules (`mod name { .. }`) in code.
fn inline_modules(code: &str) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        let rest = &code[at + 4..];
        let name_end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(0);
        if name_end == 0 || !rest[name_end..].trim_start().starts_with('{') {
            continue;
        }
        let open = at + 4 + name_end + rest[name_end..].find('{').unwrap_or(0);
        let mut depth = 0;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        ranges.push(open..open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    ranges
}

/// The deepest module file a path from `module` names, if it is a crate path; `depth` inline
/// modules around the path are stepped out of by its first `super`s.
fn resolve(
    files: &BTreeMap<Module, String>,
    module: &Module,
    path: &str,
    depth: usize,
) -> Option<Module> {
    let mut segments = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut at: Module = match *segments.peek()? {
        "crate" => {
            segments.next();
            Vec::new()
        }
        "self" => {
            segments.next();
            module.clone()
        }
        "super" => {
            let mut at = module.clone();
            let mut inline = depth;
            while segments.next_if_eq(&"super").is_some() {
                if inline > 0 {
                    inline -= 1;
                } else {
                    at.pop();
                }
            }
            at
        }
        _ => return None,
    };
    for segment in segments {
        at.push(segment.to_string());
        if !files.contains_key(&at) {
            at.pop();
            break;
        }
    }
    Some(at)
}

/// Groups of modules that import each other, each sorted.
fn circles(modules: &[Module], edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    // Two modules are in one circle when each reaches the other.
    let reach = |from: &Module| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&Module, BTreeSet<Module>> =
        modules.iter().map(|m| (m, reach(m))).collect();
    let mut circles: Vec<Vec<Module>> = Vec::new();
    for m in modules {
        if !reached[m].contains(m) || circles.iter().any(|c| c.contains(m)) {
            continue;
        }
        let circle: Vec<Module> = modules
            .iter()
            .filter(|o| reached[m].contains(*o) && reached[*o].contains(m))
            .cloned()
            .collect();
        circles.push(circle);
    }
    circles
}

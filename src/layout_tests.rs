//! Checks of the source tree's shape, which the style card and ARCHITECTURE.md promise:
//! no file in `src/` over 700 lines; the folders import each other without a circle (each
//! folder builds only on the ones below it, in the order ARCHITECTURE.md gives); no comment
//! cites a source file that does not exist. Functions over 80 lines are clippy's to catch
//! (`clippy.toml`, `#![deny(clippy::too_many_lines)]` in lib.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 700;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are module `a::b`; `src/lib.rs` is the root.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The folder a module's file is in (`""` for the crate root's files).
fn folder_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    rel.parent()
        .map_or(String::new(), |p| p.to_string_lossy().into_owned())
}

/// Test-only code is not part of the architecture: test files, and the `mod tests` at the
/// end of a file.
fn architecture_text(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_string_lossy().into_owned();
    if name.contains("tests") || name == "testing.rs" {
        return None;
    }
    let text = fs::read_to_string(file).ok()?;
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    // Comments cite modules too ("see `crate::x`"); only code imports.
    let lines = code.lines().map(|l| l.split("//").next().unwrap_or(""));
    Some(lines.collect::<Vec<_>>().join("\n"))
}

/// The module paths `text` names: `crate::a::b`, `super::c`, `self::d`, with `{...}` groups
/// expanded (`crate::a::{b, c::d}` is `crate::a::b` and `crate::a::c::d`).
fn paths_in(text: &str) -> Vec<Vec<String>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let at_word =
            i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':');
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .any(|s| b[i..].starts_with(s.as_bytes()));
        if at_word && starts {
            i = path_at(b, i, Vec::new(), &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads one path (or group of paths) at `i`, after `prefix`; returns where it ended.
fn path_at(b: &[u8], mut i: usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                i = path_at(b, i, prefix.clone(), out);
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return i + 1;
                }
            }
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i > start {
            prefix.push(String::from_utf8_lossy(&b[start..i]).into_owned());
        }
        if b[i..].starts_with(b"::") {
            i += 2;
        } else {
            out.push(prefix);
            return i;
        }
    }
}

/// The module file a path from module `from` lands in: its longest prefix that is a module.
fn resolve(
    from: &[String],
    path: &[String],
    modules: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<PathBuf> {
    let mut abs: Vec<String> = from.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            abs.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    while rest.first().map(String::as_str) == Some("super") {
        abs.pop();
        rest = &rest[1..];
    }
    abs.extend(rest.iter().cloned());
    (0..=abs.len())
        .rev()
        .find_map(|n| modules.get(&abs[..n]).cloned())
}

/// Every source file and the files it imports.
fn import_graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let files: Vec<PathBuf> = rust_files(&src())
        .into_iter()
        .filter(|f| !f.ends_with("main.rs"))
        .collect();
    let modules: BTreeMap<Vec<String>, PathBuf> =
        files.iter().map(|f| (module_of(f), f.clone())).collect();
    let mut graph = BTreeMap::new();
    for f in &files {
        let Some(text) = architecture_text(f) else {
            continue;
        };
        let from = module_of(f);
        // A file's `super` is its module's parent, so a plain file's is its folder's module.
        let edges: BTreeSet<PathBuf> = paths_in(&text)
            .iter()
            .filter_map(|p| resolve(&from, p, &modules))
            .filter(|t| t != f)
            .collect();
        graph.insert(f.clone(), edges);
    }
    graph
}

/// The first folder of a file (`core` for `src/core/deliver.rs`, `""` for `src/lib.rs`).
fn top_folder(file: &Path) -> String {
    folder_of(file).split('/').next().unwrap_or("").to_string()
}

/// Strongly connected components of `graph` (Tarjan), the ones of two or more nodes.
fn circles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct T<'g> {
        g: &'g BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'g PathBuf, usize>,
        low: BTreeMap<&'g PathBuf, usize>,
        stack: Vec<&'g PathBuf>,
        on: BTreeSet<&'g PathBuf>,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'g>(t: &mut T<'g>, v: &'g PathBuf) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.g.contains_key(w) {
                continue;
            }
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_source_file_is_over_700_lines() {
    let long: Vec<String> = rust_files(&src())
        .iter()
        .filter_map(|f| {
            let n = fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

/// No circle of imports leaves a folder: files may import each other within their folder,
/// but between folders the imports go one way.
#[test]
fn no_import_circle_crosses_a_folder() {
    let graph = import_graph();
    for comp in circles(&graph) {
        let folders: BTreeSet<String> = comp.iter().map(|f| folder_of(f)).collect();
        assert!(
            folders.len() == 1,
            "a circle of imports across folders {folders:?}: {comp:?}"
        );
    }
}

/// The top-level folders form layers: the folder graph has no circle at all.
#[test]
fn the_folders_are_layered() {
    let mut folders: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (f, edges) in import_graph() {
        let from = PathBuf::from(top_folder(&f));
        let entry = folders.entry(from.clone()).or_default();
        for t in edges {
            let to = PathBuf::from(top_folder(&t));
            if to != from && !to.as_os_str().is_empty() {
                entry.insert(to);
            }
        }
    }
    let found = circles(&folders);
    assert!(found.is_empty(), "folders importing each other: {found:?}");
}

/// The checks above see what they should: a made-up circle across folders is found.
#[test]
fn a_circle_across_folders_is_found() {
    let paths = paths_in("use crate::core::{broker::Broker, deliver};\nsuper::x::y(); self::z");
    let names: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        names,
        [
            "crate::core::broker::Broker",
            "crate::core::deliver",
            "super::x::y",
            "self::z"
        ]
    );
    let (a, b, c) = (
        PathBuf::from("a/x.rs"),
        PathBuf::from("b/y.rs"),
        PathBuf::from("a/z.rs"),
    );
    let g: BTreeMap<PathBuf, BTreeSet<PathBuf>> = [
        (a.clone(), [b.clone()].into()),
        (b.clone(), [c.clone()].into()),
        (c.clone(), [a.clone()].into()),
    ]
    .into();
    assert_eq!(circles(&g).len(), 1);
}

/// Comments that name a source file (`see dial.rs`) name one that exists.
#[test]
fn comments_cite_files_that_exist() {
    let root = src().parent().unwrap().to_path_buf();
    let files: Vec<String> = rust_files(&src())
        .iter()
        .map(|f| {
            f.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut missing = Vec::new();
    for f in rust_files(&src()) {
        let text = fs::read_to_string(&f).unwrap();
        for line in text.lines() {
            let Some(comment) = line.split_once("//").map(|(_, c)| c) else {
                continue;
            };
            for word in comment.split(|c: char| !(c.is_ascii_alphanumeric() || "_/.-".contains(c)))
            {
                let word = word.trim_end_matches('.');
                if !word.ends_with(".rs") || word.starts_with('.') || f.ends_with("layout_tests.rs")
                {
                    continue;
                }
                let exists = root.join(word).exists()
                    || files.iter().any(|p| p.ends_with(&format!("/{word}")));
                if !exists {
                    missing.push(format!("{}: {word}", f.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "comments cite files that do not exist: {missing:#?}"
    );
}

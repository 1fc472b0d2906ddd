//! The architecture, checked: within each crate no file reaches back to a file that reaches
//! it (no import cycle between modules), and across crates the dependency rules of
//! `docs/architecture.md` hold (the emulator and the harness never depend on the TAS, SIP
//! knows nothing of calls, media or gRPC, media nothing of SIP, the registrar nothing of SIP).
//! A change that breaks a layer fails here, naming the cycle or the edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// The module path of every `.rs` file under `src` (`lib.rs`/`main.rs`/`mod.rs` name their folder).
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src").with_extension("");
            let mut module: Module = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
            if matches!(module.last().map(String::as_str), Some("lib" | "main" | "mod")) {
                module.pop();
            }
            found.insert(module, path);
        }
    }
    found
}

/// The source without comments and without its `#[cfg(test)]` tail (tests may reach anywhere).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("source file");
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The identifier path starting at byte `start` of `text` (`a::b::c`, braces ignored).
fn path_at(text: &str, start: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = &text[start..];
    loop {
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        parts.push(rest[..end].to_owned());
        match rest[end..].strip_prefix("::") {
            Some(after) => rest = after,
            None => break,
        }
    }
    parts
}

/// The longest known module that `path`, written in `module`, names.
fn resolve(module: &Module, path: &[String], known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let (mut base, rest) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (module.clone(), &path[1..]),
        Some("super") => {
            let mut base = module.clone();
            let mut rest = path;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        // A child module named directly (`parse::X` inside `message`).
        Some(first) => {
            let mut child = module.clone();
            child.push(first.to_owned());
            if !known.contains_key(&child) {
                return None;
            }
            (module.clone(), path)
        }
        None => return None,
    };
    base.extend(rest.iter().cloned());
    (0..=base.len()).rev().map(|n| base[..n].to_vec()).find(|candidate| known.contains_key(candidate))
}

/// Module-to-module references of the crate under `src`.
fn references(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let known = modules(src);
    let mut edges = BTreeMap::new();
    for (module, path) in &known {
        let text = code(path);
        let mut targets = BTreeSet::new();
        let bytes = text.as_bytes();
        for (index, _) in text.match_indices(|c: char| c.is_ascii_alphabetic() || c == '_') {
            // Only where a path starts: not inside an identifier or after `::`.
            let before = if index == 0 { b' ' } else { bytes[index - 1] };
            if before.is_ascii_alphanumeric() || before == b'_' || before == b':' {
                continue;
            }
            let path = path_at(&text, index);
            if path.len() < 2 {
                continue;
            }
            if let Some(target) = resolve(module, &path, &known) {
                if &target != module {
                    targets.insert(target);
                }
            }
        }
        // `use super::{a, b::c}` groups name several modules at once.
        for (index, _) in text.match_indices("::{") {
            let start = text[..index].rfind(|c: char| c.is_whitespace() || c == '(').map_or(0, |i| i + 1);
            let prefix = path_at(&text, start);
            let Some(close) = text[index..].find('}') else { continue };
            for item in text[index + 3..index + close].split(',') {
                let item = item.trim().split(" as ").next().unwrap_or_default();
                let mut path = prefix.clone();
                path.extend(item.split("::").filter(|part| !part.is_empty() && *part != "self").map(str::to_owned));
                if let Some(target) = resolve(module, &path, &known) {
                    if &target != module {
                        targets.insert(target);
                    }
                }
            }
        }
        edges.insert(module.clone(), targets);
    }
    edges
}

/// The strongly connected groups of more than one module (Tarjan's algorithm).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on_stack: BTreeSet<Module>,
        next: usize,
        found: Vec<Vec<Module>>,
    }
    fn visit(state: &mut State<'_>, module: &Module) {
        state.index.insert(module.clone(), state.next);
        state.low.insert(module.clone(), state.next);
        state.next += 1;
        state.stack.push(module.clone());
        state.on_stack.insert(module.clone());
        let targets: Vec<Module> = state.edges.get(module).map(|t| t.iter().cloned().collect()).unwrap_or_default();
        for target in targets {
            if !state.index.contains_key(&target) {
                visit(state, &target);
                let low = state.low[module].min(state.low[&target]);
                state.low.insert(module.clone(), low);
            } else if state.on_stack.contains(&target) {
                let low = state.low[module].min(state.index[&target]);
                state.low.insert(module.clone(), low);
            }
        }
        if state.low[module] == state.index[module] {
            let mut group = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(&member);
                let done = &member == module;
                group.push(member);
                if done {
                    break;
                }
            }
            if group.len() > 1 {
                state.found.push(group);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for module in edges.keys() {
        if !state.index.contains_key(module) {
            visit(&mut state, module);
        }
    }
    state.found
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn crate_sources() -> Vec<PathBuf> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("crates folder")
        .flatten()
        .map(|entry| entry.path().join("src"))
        .collect();
    sources.push(root().join("src"));
    sources.sort();
    sources
}

#[test]
fn no_file_of_a_crate_reaches_back_to_one_that_reaches_it() {
    let mut found = Vec::new();
    for src in crate_sources() {
        for group in cycles(&references(&src)) {
            let names: Vec<String> =
                group.iter().map(|module| format!("{}::{}", src.display(), module.join("::"))).collect();
            found.push(names.join(" <-> "));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("lib.rs"), "mod a;\nmod b;\n").expect("write");
    std::fs::write(dir.path().join("a.rs"), "use crate::b::B;\npub struct A;\n").expect("write");
    std::fs::write(dir.path().join("b.rs"), "pub struct B(super::a::A);\n").expect("write");
    let found = cycles(&references(dir.path()));
    assert_eq!(found.len(), 1, "{found:?}");
    std::fs::write(dir.path().join("b.rs"), "pub struct B;\n").expect("write");
    assert!(cycles(&references(dir.path())).is_empty());
}

/// The dependencies of workspace crate `name` on other workspace crates, from its manifest.
fn workspace_dependencies(name: &str) -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(root().join("crates").join(name).join("Cargo.toml")).expect("manifest");
    let value: toml::Value = toml::from_str(&manifest).expect("TOML");
    let crates = ["domain", "tls", "sip", "sdp", "media", "registrar", "store", "tas", "emulator", "conformance"];
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|table| value.get(table).and_then(toml::Value::as_table))
        .flat_map(|table| table.keys().cloned().collect::<Vec<_>>())
        .filter(|dependency| crates.contains(&dependency.as_str()))
        .collect()
}

#[test]
fn crates_depend_only_downwards() {
    let forbidden: &[(&str, &[&str])] = &[
        ("domain", &["tls", "sip", "sdp", "media", "registrar", "store", "tas", "emulator", "conformance"]),
        ("tls", &["domain", "sip", "sdp", "media", "registrar", "store", "tas", "emulator", "conformance"]),
        ("sdp", &["sip", "media", "registrar", "store", "tas", "emulator", "conformance"]),
        ("sip", &["domain", "sdp", "media", "registrar", "store", "tas", "emulator", "conformance"]),
        ("media", &["sip", "domain", "registrar", "store", "tas", "emulator", "conformance"]),
        ("registrar", &["sip", "sdp", "media", "store", "tas", "emulator", "conformance"]),
        ("store", &["tls", "sip", "sdp", "media", "registrar", "tas", "emulator", "conformance"]),
        ("tas", &["emulator", "conformance"]),
        ("emulator", &["tas", "registrar", "store", "conformance"]),
        ("conformance", &["tas", "registrar", "store"]),
    ];
    for (name, never) in forbidden {
        let dependencies = workspace_dependencies(name);
        for dependency in *never {
            assert!(!dependencies.contains(*dependency), "{name} must not depend on {dependency}: {dependencies:?}");
        }
    }
    // SIP knows no gRPC, media no SIP: checked on their external dependencies too.
    let manifest =
        |name: &str| std::fs::read_to_string(root().join("crates").join(name).join("Cargo.toml")).expect("manifest");
    assert!(!manifest("sip").contains("tonic") && !manifest("sip").contains("webrtc"), "sip depends on gRPC or media");
    assert!(!manifest("media").contains("tonic"), "media depends on gRPC");
}

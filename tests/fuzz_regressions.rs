//! Every input the fuzzers ever found a fault with (`tests/fixtures/fuzz/<target>/`, kept there
//! by `scripts/fuzz`), replayed through the same checks the fuzz targets run, so that a fault
//! fixed stays fixed. Each target's seeds run too, so the checks are exercised even before a
//! finding.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

/// The files in `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|entry| entry.path()).filter(|path| path.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Runs `check` on every finding of `target` and on `seeds`; a panic names the file.
fn replay(target: &str, seeds: &Path, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = inputs(&root.join("tests/fixtures/fuzz").join(target));
    files.extend(inputs(seeds));
    assert!(!files.is_empty(), "nothing to replay for {target}");
    for file in files {
        let data = std::fs::read(&file).expect("readable input");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let why =
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("{target}: {} fails: {}", file.display(), why.unwrap_or_default());
        }
    }
}

fn rfc4475() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4475")
}

fn seeds(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target)
}

#[test]
fn datagrams() {
    replay("datagram", &rfc4475(), checks::datagram);
}

#[test]
fn streams() {
    replay("stream", &rfc4475(), checks::stream);
}

#[test]
fn header_values() {
    replay("header_values", &seeds("header_values"), checks::header_values);
}

#[test]
fn session_descriptions() {
    replay("session_description", &seeds("session_description"), checks::session_description);
}

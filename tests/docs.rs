//! The documentation, kept true: `README.md` and every page under `docs/` are checked against
//! the tree and the `ringer` binary. Relative links point to files that exist (and `#anchors`
//! to headings there); every `ringer <subcommand>` shown in a command block or in inline code is
//! a real subcommand, and every `--flag` after it is in that subcommand's `--help`; every
//! subcommand is shown somewhere; every ```toml block parses, and each of its keys (and each
//! key of the configuration reference tables) is a field of a `Deserialize` type under `crates/`
//! or a key of `ringer.example.toml` / `core.example.toml`; each page starts with a title and
//! is linked from the README; `docs/architecture.md` names every crate under `crates/`, and
//! `docs/sip.md` every SIPp scenario under `scenarios/`.
//! Each failure names the page, the line and what is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root: the root package's manifest directory.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Markdown page: where it is (relative to the root, for messages) and its text.
struct Page {
    path: PathBuf,
    text: String,
}

impl Page {
    /// A page read from `relative` under the root.
    fn read(relative: &Path) -> Self {
        let text = std::fs::read_to_string(root().join(relative))
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", relative.display()));
        Self { path: relative.to_path_buf(), text }
    }

    /// The page's name in messages: its path from the root.
    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// `README.md` and every `.md` file under `docs/`, sorted.
fn pages() -> Vec<Page> {
    let mut found = vec![Page::read(Path::new("README.md"))];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ folder")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| path.strip_prefix(root()).expect("under the root").to_path_buf())
        .collect();
    docs.sort();
    found.extend(docs.iter().map(PathBuf::as_path).map(Page::read));
    found
}

/// A fenced code block: its language (the word after the fence), its text, and the line
/// (1-based) of its first content line.
struct Block {
    lang: String,
    text: String,
    line: usize,
}

/// Splits Markdown into its prose (fenced blocks blanked out line for line, so line numbers
/// stay) and its fenced code blocks.
fn split(text: &str) -> (String, Vec<Block>) {
    let mut prose = Vec::new();
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            match open.take() {
                Some(block) => blocks.push(block),
                None => {
                    let lang = line.trim_start().trim_start_matches('`').trim().to_owned();
                    open = Some(Block { lang, text: String::new(), line: index + 2 });
                }
            }
            prose.push("");
        } else if let Some(block) = open.as_mut() {
            block.text.push_str(line);
            block.text.push('\n');
            prose.push("");
        } else {
            prose.push(line);
        }
    }
    (prose.join("\n"), blocks)
}

/// The inline code spans of `prose` with the line each starts on; a span may run over a line
/// break, which reads as a space.
fn code_spans(prose: &str) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut line = 1;
    let mut open: Option<(usize, String)> = None;
    for c in prose.chars() {
        if c == '`' {
            match open.take() {
                Some(span) => spans.push(span),
                None => open = Some((line, String::new())),
            }
        } else if let Some((_, span)) = open.as_mut() {
            span.push(if c == '\n' { ' ' } else { c });
        }
        if c == '\n' {
            line += 1;
        }
    }
    spans
}

/// `prose` with its inline code spans blanked out (links inside code are not links).
fn without_code(prose: &str) -> String {
    let mut inside = false;
    prose
        .chars()
        .map(|c| match c {
            '`' => {
                inside = !inside;
                ' '
            }
            '\n' => '\n',
            _ if inside => ' ',
            c => c,
        })
        .collect()
}

/// The GitHub anchor of a heading line (`## The emulated core's SBC` is
/// `the-emulated-cores-sbc`): lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor the headings of `text` give, with GitHub's `-1`, `-2` for repeated ones.
fn anchors(text: &str) -> BTreeSet<String> {
    let (prose, _) = split(text);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut found = BTreeSet::new();
    for line in prose.lines().filter(|line| line.starts_with('#')) {
        let base = slug(line);
        let count = seen.entry(base.clone()).or_default();
        let anchor = if *count == 0 { base } else { format!("{base}-{count}") };
        *count += 1;
        found.insert(anchor);
    }
    found
}

/// The relative link targets of `text` (`[text](target)`, outside code) with their lines;
/// links with a scheme (`https://`, `mailto:`) are left out.
fn links(text: &str) -> Vec<(usize, String)> {
    let (prose, _) = split(text);
    let mut found = Vec::new();
    for (index, line) in without_code(&prose).lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].trim();
            if !target.contains("://") && !target.starts_with("mailto:") {
                found.push((index + 1, target.to_owned()));
            }
            rest = &after[end..];
        }
    }
    found
}

/// What is wrong with the relative links of `page`: a target file that does not exist, or an
/// anchor that no heading of the target page gives.
fn link_problems(page: &Page) -> Vec<String> {
    let dir = page.path.parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();
    for (line, target) in links(&page.text) {
        let (file, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
        let (path, text) = if file.is_empty() {
            (page.path.clone(), Some(page.text.clone()))
        } else {
            let path = dir.join(file);
            match std::fs::read_to_string(root().join(&path)) {
                Ok(text) => (path, Some(text)),
                Err(_) if root().join(&path).is_dir() => (path, None),
                Err(_) => {
                    problems.push(format!(
                        "{}:{line}: link to `{target}`: {} does not exist",
                        page.name(),
                        path.display()
                    ));
                    continue;
                }
            }
        };
        let is_markdown = path.extension().is_some_and(|ext| ext == "md");
        let Some(text) = text.filter(|_| is_markdown && !anchor.is_empty()) else { continue };
        if !anchors(&text).contains(anchor) {
            problems.push(format!(
                "{}:{line}: link to `{target}`: {} has no heading with the anchor `#{anchor}`",
                page.name(),
                path.display()
            ));
        }
    }
    problems
}

#[test]
fn links_point_to_files_and_headings_that_exist() {
    let problems: Vec<String> = pages().iter().flat_map(link_problems).collect();
    assert!(problems.is_empty(), "broken links in the docs:\n{}", problems.join("\n"));
}

/// A `ringer` command shown in the docs: the subcommand path (`["voicemail", "list"]`, or
/// several alternatives for `list|play|delete`), the flags after it, and where it is.
struct Shown {
    place: String,
    subcommand: String,
    nested: Vec<Vec<String>>,
    flags: Vec<String>,
}

/// Shell words that end one command and may start another.
fn is_separator(word: &str) -> bool {
    matches!(word, "&&" | "||" | ";" | "&" | "|" | "$" | "sudo" | "exec" | "time")
}

/// The `ringer` commands on one command line: `ringer <sub> [<nested>] --flags...` where
/// `ringer` starts a command (first word, after a separator or environment assignments), and
/// `cargo run ... -- <sub> --flags...`.
fn commands_in(line: &str, place: &str) -> Vec<Shown> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut found = Vec::new();
    for (index, word) in words.iter().enumerate() {
        let starts_command = index == 0 || {
            let before = words[index - 1];
            is_separator(before) || before.ends_with(';') || (before.contains('=') && !before.starts_with('-'))
        };
        let after = if (*word == "ringer" || word.ends_with("/ringer")) && starts_command {
            &words[index + 1..]
        } else if *word == "cargo" && words.get(index + 1) == Some(&"run") {
            match words[index..].iter().position(|word| *word == "--") {
                Some(dash) => &words[index + dash + 1..],
                None => continue,
            }
        } else {
            continue;
        };
        let Some(subcommand) = after.first().filter(|word| !word.starts_with('-')) else { continue };
        let mut rest = &after[1..];
        // Lowercase words after it: nested subcommands (`tokens add`, `list|play`) or, where
        // the command has none, arguments; the check tells them apart by `--help`.
        let mut nested = Vec::new();
        while let Some(next) = rest.first().filter(|next| next.starts_with(|c: char| c.is_ascii_lowercase())) {
            nested.push(next.split('|').map(str::to_owned).collect());
            rest = &rest[1..];
        }
        let mut flags = Vec::new();
        let mut depth = 0i32;
        for word in rest {
            if depth == 0 && is_separator(word) {
                break;
            }
            depth += word.matches(['[', '(']).count() as i32 - word.matches([']', ')']).count() as i32;
            let bare = word.trim_start_matches(['[', '(']).trim_end_matches([']', ')', ',', ';']);
            if bare.len() > 2 && bare.starts_with("--") {
                flags.push(bare.split('=').next().unwrap_or(bare).to_owned());
            }
            if word.ends_with(';') && depth == 0 {
                break;
            }
        }
        found.push(Shown { place: place.to_owned(), subcommand: (*subcommand).to_owned(), nested, flags });
    }
    found
}

/// Every `ringer` command `page` shows: in ```sh/```shell/```bash blocks (comments cut,
/// backslash continuations joined), on the `$ ` lines of ```text/```console blocks, and in
/// inline code that starts with `ringer ` or `cargo run`.
fn shown_commands(page: &Page) -> Vec<Shown> {
    let (prose, blocks) = split(&page.text);
    let mut found = Vec::new();
    for block in &blocks {
        let shell = matches!(block.lang.as_str(), "sh" | "shell" | "bash");
        let transcript = matches!(block.lang.as_str(), "text" | "console");
        if !shell && !transcript {
            continue;
        }
        let mut joined: Vec<(usize, String)> = Vec::new();
        let mut continued = false;
        for (offset, line) in block.text.lines().enumerate() {
            let text = line.trim_end().trim_end_matches('\\');
            match joined.last_mut().filter(|_| continued) {
                Some((_, last)) => {
                    last.push(' ');
                    last.push_str(text);
                }
                None => joined.push((block.line + offset, text.to_owned())),
            }
            continued = line.trim_end().ends_with('\\');
        }
        for (line, text) in joined {
            let command = if transcript {
                match text.trim_start().strip_prefix("$ ") {
                    Some(command) => command.to_owned(),
                    None => continue,
                }
            } else {
                text
            };
            // A comment starts at a `#` that begins a word (`--dtmf '#'` is no comment).
            let code = if command.trim_start().starts_with('#') {
                ""
            } else {
                command.find(" #").map_or(command.as_str(), |at| &command[..at])
            };
            found.extend(commands_in(code, &format!("{}:{line}", page.name())));
        }
    }
    for (line, span) in code_spans(&prose) {
        if span.starts_with("ringer ") || span.starts_with("cargo run") {
            found.extend(commands_in(&span, &format!("{}:{line}", page.name())));
        }
    }
    found
}

/// The `--help` of `ringer` with `path` (`[]` for the top level), run once per path.
fn help<'a>(cache: &'a mut BTreeMap<Vec<String>, String>, path: &[String]) -> &'a str {
    cache
        .entry(path.to_vec())
        .or_insert_with(|| {
            let output = Command::new(env!("CARGO_BIN_EXE_ringer"))
                .args(path)
                .arg("--help")
                .output()
                .expect("the ringer binary runs");
            assert!(output.status.success(), "`ringer {} --help` failed: {output:?}", path.join(" "));
            String::from_utf8(output.stdout).expect("help is UTF-8")
        })
        .as_str()
}

/// The subcommands a `--help` text lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Whether `help` names `flag` as a whole word (`--grpc` is not `--grpc-listen`).
fn names_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag)
        .any(|(at, _)| help[at + flag.len()..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-')))
}

/// What is wrong with the commands `page` shows: unknown subcommands and unknown flags.
fn command_problems(cache: &mut BTreeMap<Vec<String>, String>, shown: &[Shown]) -> Vec<String> {
    let mut problems = Vec::new();
    let top = subcommands(help(cache, &[]));
    for command in shown {
        if !top.contains(&command.subcommand) {
            problems.push(format!(
                "{}: `ringer {}` is not a subcommand of ringer (`ringer --help` lists {top:?})",
                command.place, command.subcommand
            ));
            continue;
        }
        let mut paths = vec![vec![command.subcommand.clone()]];
        for level in &command.nested {
            let [base] = paths.as_slice() else { break };
            let base = base.clone();
            let known = subcommands(help(cache, &base));
            if known.is_empty() {
                break;
            }
            paths.clear();
            for nested in level {
                if known.contains(nested) {
                    paths.push([base.clone(), vec![nested.clone()]].concat());
                } else {
                    problems.push(format!(
                        "{}: `ringer {} {nested}`: `{nested}` is not a subcommand of `ringer {}` (it has {known:?})",
                        command.place,
                        base.join(" "),
                        base.join(" ")
                    ));
                }
            }
        }
        for path in paths {
            let text = help(cache, &path).to_owned();
            for flag in &command.flags {
                if !names_flag(&text, flag) {
                    problems.push(format!(
                        "{}: `ringer {} {flag}`: `ringer {} --help` has no {flag}",
                        command.place,
                        path.join(" "),
                        path.join(" ")
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn commands_shown_are_real_subcommands_with_real_flags() {
    let mut cache = BTreeMap::new();
    let shown: Vec<Shown> = pages().iter().flat_map(shown_commands).collect();
    assert!(shown.len() > 20, "the command finder found only {} commands: is it broken?", shown.len());
    let problems = command_problems(&mut cache, &shown);
    assert!(problems.is_empty(), "commands in the docs that ringer does not have:\n{}", problems.join("\n"));
}

#[test]
fn every_subcommand_is_shown_somewhere() {
    let mut cache = BTreeMap::new();
    let shown: BTreeSet<String> = pages().iter().flat_map(shown_commands).map(|command| command.subcommand).collect();
    let missing: Vec<String> = subcommands(help(&mut cache, &[])).difference(&shown).cloned().collect();
    assert!(missing.is_empty(), "subcommands of `ringer --help` that no page shows: {missing:?}");
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    found
}

/// The quoted values of `name = "..."` in an attribute line (`rename = "subscriber"`).
fn attribute_values(line: &str, name: &str) -> Vec<String> {
    let pattern = format!("{name} = \"");
    line.match_indices(&pattern)
        .filter(|(at, _)| *at == 0 || !line[..*at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        .filter_map(|(at, _)| line[at + pattern.len()..].split('"').next().map(str::to_owned))
        .collect()
}

/// The field name a line of a struct (or struct-like variant) declares, if it declares one.
fn field_name(line: &str) -> Option<String> {
    let line = line.trim();
    let line = line.strip_prefix("pub(crate) ").or_else(|| line.strip_prefix("pub ")).unwrap_or(line);
    let (name, _) = line.split_once(':')?;
    let is_field = !name.is_empty()
        && !line[name.len()..].starts_with("::")
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    is_field.then(|| name.to_owned())
}

/// Every key a config file may hold, as the code reads it: the fields (and `rename`d or
/// `tag` names) of every type deriving `Deserialize` under `crates/*/src`.
fn deserialized_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for file in rust_files(&root().join("crates")) {
        let text = std::fs::read_to_string(&file).expect("source file");
        let mut deriving = false;
        let mut depth: Option<i32> = None;
        for line in text.lines() {
            let code = line.trim();
            if code.starts_with("//") {
                continue;
            }
            if code.starts_with("#[") {
                if code.contains("derive(") && code.contains("Deserialize") {
                    deriving = true;
                }
                if deriving || depth.is_some() {
                    keys.extend(attribute_values(code, "rename"));
                    keys.extend(attribute_values(code, "tag"));
                }
                continue;
            }
            match depth {
                None if deriving && (code.contains("struct ") || code.contains("enum ")) => {
                    deriving = false;
                    let open = code.matches('{').count() as i32 - code.matches('}').count() as i32;
                    if open > 0 {
                        depth = Some(open);
                    }
                }
                None => {}
                Some(level) => {
                    keys.extend(field_name(code));
                    let level = level + code.matches('{').count() as i32 - code.matches('}').count() as i32;
                    depth = (level > 0).then_some(level);
                }
            }
        }
    }
    keys
}

/// Every key the example config files name, commented out or not (`# ring_time = "200ms"`),
/// inline-table keys and `[table]` headers included.
fn example_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for name in ["ringer.example.toml", "core.example.toml"] {
        let text = std::fs::read_to_string(root().join(name)).expect("example config");
        for line in text.lines() {
            let line = line.trim_start_matches(['#', ' ']);
            if let Some(header) = line.strip_prefix('[') {
                let header = header.trim_start_matches('[').split(']').next().unwrap_or_default();
                keys.extend(header.split('.').map(|part| part.trim().to_owned()));
            }
            for (at, _) in line.match_indices('=') {
                let before = line[..at].trim_end();
                let start = before.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
                if start < before.len() && !line[at..].starts_with("==") {
                    keys.insert(before[start..].to_owned());
                }
            }
        }
    }
    keys
}

/// Every key of a TOML value, with its dotted path: tables, arrays of tables, inline tables.
fn toml_keys(prefix: &str, table: &toml::Table, found: &mut Vec<(String, String)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        found.push((path.clone(), key.clone()));
        match value {
            toml::Value::Table(inner) => toml_keys(&path, inner, found),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        toml_keys(&path, inner, found);
                    }
                }
            }
            _ => {}
        }
    }
}

/// What is wrong with the ```toml blocks of `page` and with the key column of its
/// configuration tables (`| key | default | meaning |`): TOML that does not parse, or keys
/// `known` does not hold.
fn config_problems(page: &Page, known: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let (prose, blocks) = split(&page.text);
    for block in blocks.iter().filter(|block| block.lang == "toml") {
        let table: toml::Table = match toml::from_str(&block.text) {
            Ok(table) => table,
            Err(error) => {
                problems.push(format!("{}:{}: the toml block does not parse: {error}", page.name(), block.line));
                continue;
            }
        };
        let mut keys = Vec::new();
        toml_keys("", &table, &mut keys);
        for (path, key) in keys {
            if !known.contains(&key) {
                problems.push(format!(
                    "{}:{}: in the toml block starting here, key `{path}`: `{key}` is no field of a Deserialize type under crates/ and no key of ringer.example.toml or core.example.toml",
                    page.name(),
                    block.line
                ));
            }
        }
    }
    let mut in_key_table = false;
    for (index, line) in prose.lines().enumerate() {
        if line.starts_with("| key |") {
            in_key_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_key_table = false;
            continue;
        }
        let Some(cell) = line.split('|').nth(1).filter(|_| in_key_table) else { continue };
        for (_, span) in code_spans(cell) {
            let names = span.split_whitespace().flat_map(|word| word.trim_matches(['[', ']']).split('.'));
            for key in names.filter(|key| !key.is_empty()) {
                if !known.contains(key) {
                    problems.push(format!(
                        "{}:{}: config table key `{span}`: `{key}` is no field of a Deserialize type under crates/ and no key of ringer.example.toml or core.example.toml",
                        page.name(),
                        index + 1
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn config_keys_shown_are_keys_the_code_reads() {
    let mut known = deserialized_keys();
    assert!(known.contains("sip_uri") && known.contains("handset"), "the key finder is broken: {known:?}");
    known.extend(example_keys());
    let problems: Vec<String> = pages().iter().flat_map(|page| config_problems(page, &known)).collect();
    assert!(problems.is_empty(), "config keys in the docs that no config reads:\n{}", problems.join("\n"));
}

#[test]
fn architecture_names_every_crate() {
    let page = Page::read(Path::new("docs/architecture.md"));
    let missing: Vec<String> = std::fs::read_dir(root().join("crates"))
        .expect("crates/ folder")
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| format!("crates/{}", entry.file_name().to_string_lossy()))
        .filter(|name| !page.text.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "docs/architecture.md does not describe {missing:?}: add each crate's job and modules");
}

#[test]
fn every_sipp_scenario_is_described() {
    let page = Page::read(Path::new("docs/sip.md"));
    let missing: Vec<String> = std::fs::read_dir(root().join("scenarios"))
        .expect("scenarios/ folder")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".xml") && !page.text.contains(name.as_str()))
        .collect();
    assert!(missing.is_empty(), "docs/sip.md's table of SIPp scenarios does not describe {missing:?}");
}

#[test]
fn every_page_has_a_title_and_is_linked_from_the_readme() {
    let all = pages();
    let readme = &all[0];
    assert!(
        readme.text.starts_with("# ringer\n\n```sh\ncargo run --release -- serve"),
        "README.md must open with its title and the two commands"
    );
    let mut problems = Vec::new();
    for page in &all[1..] {
        let mut lines = page.text.lines();
        let title = lines.next().unwrap_or_default();
        let blank = lines.next().unwrap_or_default();
        let summary = lines.next().unwrap_or_default();
        if !title.starts_with("# ") || !blank.is_empty() || summary.is_empty() || summary.starts_with('#') {
            problems.push(format!(
                "{}: must start with `# Title`, a blank line, and a paragraph saying what it covers",
                page.name()
            ));
        }
        if !readme.text.contains(&format!("]({})", page.path.display())) {
            problems.push(format!("{}: no link to it from README.md's table of pages", page.name()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_can_fail() {
    assert_eq!(slug("## `ringer serve --config FILE`"), "ringer-serve---config-file");
    assert_eq!(slug("## The emulated core's SBC"), "the-emulated-cores-sbc");
    assert_eq!(slug("### An `[sbc]` example"), "an-sbc-example");

    let page = Page {
        path: PathBuf::from("docs/made-up.md"),
        text: "# Made up\n\nSee [gone](gone.md), [here](#nowhere), [ok](media.md) and `[no](link.md)`.\n".into(),
    };
    let problems = link_problems(&page);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("docs/gone.md does not exist"), "{problems:?}");

    let mut cache = BTreeMap::new();
    let page = Page {
        path: PathBuf::from("docs/made-up.md"),
        text: "# Made up\n\n```sh\nringer serve --no-such-flag   # comment --ignored\nringer frobnicate\nringer voicemail list --subscriber +47 | ringer voicemail nope\n```\n".into(),
    };
    let problems = command_problems(&mut cache, &shown_commands(&page));
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("--no-such-flag") && problems[1].contains("frobnicate"), "{problems:?}");

    let mut known = deserialized_keys();
    known.extend(example_keys());
    let page = Page {
        path: PathBuf::from("docs/made-up.md"),
        text: "# Made up\n\n```toml\n[sip]\nmade_up_key = 1\n```\n\n| key | default | meaning |\n|---|---|---|\n| `sip.another_made_up` | | |\n".into(),
    };
    let problems = config_problems(&page, &known);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("made_up_key") && problems[1].contains("another_made_up"), "{problems:?}");
}

//! The shape of the code, checked: dependencies between the crate's modules run one way (no
//! import cycle, nothing imports `app`, pure modules import only pure modules), and every
//! `errorType` an error's `code()` can return is in the README's error list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that do no I/O and know nothing of the backends: they may import each other only.
const PURE: &[&str] = &[
    "body",
    "config",
    "deadline",
    "document",
    "environment",
    "event",
    "logging",
    "marker",
    "metrics",
    "policy",
    "secret",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate's source with comments dropped, per top-level module (`src/vault/kv.rs` belongs
/// to `vault`); `lib.rs` and `main.rs` are the roots and not modules.
fn sources() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        out.entry(module).or_default().push_str(&code);
    }
    out
}

/// module → the other top-level modules it names through `crate::`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, code) in &sources {
        let mut deps = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `dynatrace_token_rotator::`
            }
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) && &name != module {
                deps.insert(name);
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

#[test]
fn module_dependencies_run_one_way() {
    let graph = graph();
    assert!(graph.len() > 10, "modules found: {:?}", graph.keys());
    // No cycle: repeatedly remove modules that import nothing left.
    let mut left = graph.clone();
    while !left.is_empty() {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !left.contains_key(d)))
            .map(|(m, _)| m.clone())
            .collect();
        assert!(
            !leaves.is_empty(),
            "import cycle among {:?}",
            left.iter()
                .map(|(m, d)| format!("{m} -> {d:?}"))
                .collect::<Vec<_>>()
        );
        for m in leaves {
            left.remove(&m);
        }
    }
    for (module, deps) in &graph {
        assert!(
            !deps.contains("app"),
            "{module} imports app: app sits on top"
        );
        if PURE.contains(&module.as_str()) {
            let impure: Vec<_> = deps
                .iter()
                .filter(|d| !PURE.contains(&d.as_str()))
                .collect();
            assert!(impure.is_empty(), "pure module {module} imports {impure:?}");
        }
    }
}

#[test]
fn every_error_code_is_in_the_readme() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut codes = BTreeSet::new();
    for code in sources().values() {
        for (i, _) in code.match_indices("fn code(&self) -> &'static str") {
            // The function body: up to the first line that closes it at four spaces.
            let body = &code[i..];
            let end = body.find("\n    }\n").unwrap_or(body.len());
            for part in body[..end].split("=> \"").skip(1) {
                codes.insert(part.split('"').next().unwrap().to_owned());
            }
        }
    }
    assert!(codes.len() > 20, "codes found: {codes:?}");
    let missing: Vec<_> = codes
        .iter()
        .filter(|c| !readme.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "errorTypes missing from the README: {missing:?}"
    );
}

/// Every repository path the README, `docs/` or a source comment names exists (a clone
/// carries its whole contract: nothing outside it, no path of a particular machine).
#[test]
fn every_named_path_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts = vec![root.join("README.md")];
    for dir in [
        "docs",
        "src",
        "tests",
        "sandbox/src",
        "emulator/src",
        "scripts",
    ] {
        let mut files = Vec::new();
        collect(&root.join(dir), &mut files);
        texts.extend(files);
    }
    let prefixes = [
        "src/",
        "docs/",
        "tests/",
        "scripts/",
        "events/",
        "sandbox/",
        "emulator/",
        ".ci/",
    ];
    let mut missing = BTreeSet::new();
    let mut checked = 0;
    for file in &texts {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !text.contains(concat!("../", "shared")),
            "{} points outside the repository",
            file.display()
        );
        for word in text.split(|c: char| c.is_whitespace() || "`()[],;:'\"<>|".contains(c)) {
            let word = word.trim_end_matches(['.', '§']);
            let Some(prefix) = prefixes.iter().find(|p| word.starts_with(**p)) else {
                continue;
            };
            // Globs, placeholders and bare folder prefixes are not paths.
            if word.len() == prefix.len() || word.contains(['{', '<', '*', '$']) {
                continue;
            }
            checked += 1;
            if !root.join(word).exists() {
                missing.insert(format!("{word} (named in {})", file.display()));
            }
        }
    }
    assert!(checked > 30, "only {checked} paths found");
    assert!(
        missing.is_empty(),
        "named paths that do not exist: {missing:#?}"
    );
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "rs" || e == "md" || e == "sh")
        {
            out.push(path);
        }
    }
}

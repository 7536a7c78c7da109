//! Imports only go down: pg -> pipeline -> repo -> manifest, patroni, localfs -> command -> entry points. This test
//! fails when a lower module names a higher one, or when the `pgkeep` crate (linked into
//! archive_command's hot path) picks up the daemon's HTTP server or the container client.

#![allow(clippy::unwrap_used)]

use std::path::Path;

/// (folder or file under src/, crate paths it must not use)
const RULES: &[(&str, &[&str])] = &[
    (
        "pg",
        &[
            "crate::pipeline",
            "crate::repo",
            "crate::command",
            "crate::cli",
            "crate::config",
            "crate::localfs",
        ],
    ),
    (
        "pipeline",
        &[
            "crate::pg",
            "crate::repo",
            "crate::command",
            "crate::cli",
            "crate::config",
            "crate::localfs",
        ],
    ),
    ("repo", &["crate::command", "crate::cli", "crate::manifest"]),
    // The manifest is a repository object (manifest -> repo), the repository never reads one.
    (
        "manifest",
        &["crate::command", "crate::cli", "crate::config"],
    ),
    // Commands use typed objects: the pipeline and stored bytes belong to the repository.
    (
        "command",
        &[
            "crate::pipeline",
            ".raw_get(",
            ".raw_put(",
            ".raw_put_if_absent(",
            ".raw_header(",
        ],
    ),
    (
        "patroni",
        &[
            "crate::command",
            "crate::cli",
            "crate::config",
            "crate::repo",
            "crate::manifest",
            "crate::pipeline",
            "crate::localfs",
        ],
    ),
    // The WAL service's protocol and client: a mechanism beside patroni/, below the commands.
    (
        "service",
        &[
            "crate::command",
            "crate::cli",
            "crate::repo",
            "crate::manifest",
            "crate::pipeline",
        ],
    ),
    (
        "localfs.rs",
        &["crate::command", "crate::cli", "crate::repo"],
    ),
    (
        "error.rs",
        &[
            "crate::command",
            "crate::repo",
            "crate::pg",
            "crate::pipeline",
        ],
    ),
];

fn rust_files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            rust_files(&e.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn lower_layers_never_name_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (module, forbidden) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(module), &mut files);
        assert!(!files.is_empty(), "no files for {module}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for bad in *forbidden {
                if text.contains(bad) {
                    violations.push(format!("{} uses {bad}", f.display()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_module_says_its_job() {
    let mut files = Vec::new();
    for dir in ["src", "scheduler/src", "restore-tests/src", "tests"] {
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
    }
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a //! line: {missing:?}"
    );
}

#[test]
fn the_hot_path_crate_links_no_server_or_container_client() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap();
    // indicatif stays: `pgkeep backup` draws its progress bar with it.
    for heavy in ["axum", "bollard", "croner", "hyper-util"] {
        assert!(
            !deps.lines().any(|l| l.starts_with(heavy)),
            "the pgkeep crate must not depend on {heavy}: it belongs in scheduler/ or restore-tests/"
        );
    }
}

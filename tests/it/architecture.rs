//! Architecture invariants (see docs/architecture.md). Cargo keeps the
//! layers between crates: a crate cannot import one that is not among its
//! dependencies, and the dependencies cannot form a cycle. What is left to
//! check here is what Cargo cannot see: that the crate graph is the one the
//! document draws, the boundaries between modules inside the server
//! library (only `http/` knows axum, only `store/` knows SQL) and inside
//! the status page (only `store` knows SQL, nothing knows chat or axum),
//! and that every metric family has a help text.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
}

/// The names of a manifest's normal dependencies (its `[dependencies]`).
fn dependencies(manifest: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace().join(manifest)).unwrap();
    let mut in_section = false;
    let mut names = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[dependencies]";
        } else if in_section && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['.', '=', ' ']).next().unwrap();
            names.insert(name.to_owned());
        }
    }
    names
}

/// The crate graph of docs/architecture.md: each crate and the Holdfast
/// crates it may depend on. The server library never links the rehearsal
/// tools, nor what only they need.
#[test]
fn the_crates_depend_on_each_other_as_documented() {
    let graph: [(&str, &[&str]); 6] = [
        ("Cargo.toml", &["holdfast-server", "holdfast-storm"]),
        ("crates/storm/Cargo.toml", &["holdfast-protocol", "holdfast-server"]),
        ("crates/server/Cargo.toml", &["holdfast-core", "holdfast-protocol", "holdfast-status"]),
        ("crates/status/Cargo.toml", &["holdfast-core"]),
        ("crates/protocol/Cargo.toml", &[]),
        ("crates/core/Cargo.toml", &[]),
    ];
    for (manifest, allowed) in graph {
        let ours: BTreeSet<String> =
            dependencies(manifest).into_iter().filter(|name| name.starts_with("holdfast")).collect();
        let allowed: BTreeSet<String> = allowed.iter().map(|name| (*name).to_owned()).collect();
        assert_eq!(ours, allowed, "{manifest}: its Holdfast dependencies differ from docs/architecture.md");
    }
    let server = dependencies("crates/server/Cargo.toml");
    assert!(!server.contains("tempfile"), "the server library depends on tempfile (a tool's need)");
    // The rule the graph above implies, said on its own: the status page
    // knows no chat and no HTTP serving; the server adapts it.
    let status = dependencies("crates/status/Cargo.toml");
    assert!(!status.contains("holdfast-server"), "the status page depends on the chat server");
    assert!(!status.contains("axum"), "the status page knows axum: the server's http/status serves it");
    let architecture = std::fs::read_to_string(workspace().join("docs/architecture.md")).unwrap();
    for name in ["holdfast-core", "holdfast-protocol", "holdfast-server", "holdfast-status", "holdfast-storm"] {
        assert!(architecture.contains(name), "docs/architecture.md does not name {name}");
    }
}

/// A crate's source files: (path under its `src/`, text).
fn modules(crate_dir: &str) -> Vec<(String, String)> {
    let src = workspace().join(crate_dir).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 10, "{crate_dir}: only {} source files found", files.len());
    files
        .into_iter()
        .map(|(path, text)| (path.strip_prefix(&src).unwrap().to_string_lossy().into_owned(), text))
        .collect()
}

/// A module outside its crate's store: it runs no SQL and, unless it is
/// `error.rs` (which turns the drivers' errors into the crate's), names no
/// database driver.
fn assert_knows_no_sql(module: &str, text: &str) {
    for sql in ["sqlx::query", "sqlx::raw_sql", "use sqlx", "use rusqlite"] {
        assert!(!text.contains(sql), "{module} uses {sql}: only store/ knows SQL");
    }
    if module != "error.rs" {
        for driver in ["sqlx::", "rusqlite::"] {
            assert!(!text.contains(driver), "{module} names {driver}: only store/ knows the drivers");
        }
    }
}

/// Inside the server library: `http/` (and `server.rs`, which serves it) is
/// the only module that knows axum or names `crate::http`; `store/` is the
/// only one that runs SQL or knows either database driver, but for
/// `error.rs`, which turns the drivers' errors into ours.
#[test]
fn inside_the_server_only_http_knows_axum_and_only_store_knows_sql() {
    for (module, text) in modules("crates/server") {
        let in_http = module.starts_with("http/") || module == "server.rs";
        if !in_http {
            for axum in ["axum::", "use axum", "crate::http"] {
                assert!(!text.contains(axum), "{module} names {axum}: only http/ knows axum");
            }
        }
        if !module.starts_with("store/") {
            assert_knows_no_sql(&module, &text);
        }
    }
}

/// Inside the status page: `store` (its records and trait, and `store/sql`)
/// is the only module that runs SQL or names the database driver, but for
/// `error.rs`, which turns the driver's errors into its own; no module
/// names axum or the chat server (the server adapts the status page, never
/// the other way round).
#[test]
fn inside_the_status_page_only_store_knows_sql_and_nothing_knows_chat() {
    for (module, text) in modules("crates/status") {
        for foreign in ["axum", "holdfast_server", "holdfast_protocol"] {
            assert!(
                !text.contains(foreign),
                "{module} names {foreign}: the status page knows no chat and no HTTP serving"
            );
        }
        if !(module == "store.rs" || module.starts_with("store/")) {
            assert_knows_no_sql(&module, &text);
        }
    }
}

/// Every metric family the code names has a help text in
/// `telemetry::METRICS` (so `/metrics` passes `promtool check metrics`),
/// and the table names no family the code does not use.
#[test]
fn every_metric_family_has_a_help_text() {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        sources(&entry.unwrap().path().join("src"), &mut files);
    }
    let mut named = BTreeSet::new();
    for (_, text) in &files {
        for macro_name in ["counter!(", "gauge!(", "histogram!("] {
            for (at, _) in text.match_indices(macro_name) {
                let rest = text[at + macro_name.len()..].trim_start();
                if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next())
                    && name.starts_with("holdfast_")
                {
                    named.insert(name.to_owned());
                }
            }
        }
    }
    assert!(named.len() > 30, "found only {} families", named.len());
    let described: BTreeSet<String> =
        holdfast_server::telemetry::METRICS.iter().map(|(name, _, _)| (*name).to_owned()).collect();
    let missing: Vec<_> = named.difference(&described).collect();
    assert!(missing.is_empty(), "families without a help text in telemetry::METRICS: {missing:?}");
    let unused: Vec<_> = described.difference(&named).collect();
    assert!(unused.is_empty(), "telemetry::METRICS describes families the code never names: {unused:?}");
}

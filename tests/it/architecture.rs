//! Architecture invariants that are cheap to guard (see
//! docs/architecture.md): only `http/` knows axum, only `store/` knows SQL.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn only_http_knows_axum_and_only_store_knows_sql() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 10);
    for (path, text) in &files {
        let in_http = path.contains("/src/http/") || path.ends_with("/src/server.rs");
        let in_store = path.contains("/src/store/");
        if !in_http {
            assert!(!text.contains("axum::") && !text.contains("use axum"), "{path} uses axum");
        }
        if !in_store {
            assert!(!text.contains("sqlx::query"), "{path} runs SQL");
        }
    }
}

/// Every metric family the code names has a help text in
/// `telemetry::METRICS` (so `/metrics` passes `promtool check metrics`),
/// and the table names no family the code does not use.
#[test]
fn every_metric_family_has_a_help_text() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let mut named = std::collections::BTreeSet::new();
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
    let described: std::collections::BTreeSet<String> =
        holdfast::telemetry::METRICS.iter().map(|(name, _, _)| (*name).to_owned()).collect();
    let missing: Vec<_> = named.difference(&described).collect();
    assert!(missing.is_empty(), "families without a help text in telemetry::METRICS: {missing:?}");
    let unused: Vec<_> = described.difference(&named).collect();
    assert!(unused.is_empty(), "telemetry::METRICS describes families the code never names: {unused:?}");
}

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

//! The build script of the crates that own migrations (`holdfast-server`,
//! `holdfast-status`): each directory beside this file becomes
//! `$OUT_DIR/migrations/<directory>.rs`, one expression that builds its
//! `sqlx::migrate::Migrator` with every file's SQL compiled in.
//!
//! This does what `sqlx::migrate!` does, without its proc-macro: that macro
//! brings a second build of sqlx, both database drivers, SQLite's C source
//! and tokio for the compiler's host, about a minute of every cold build.
//! The migrations are the same to sqlx (version, description and SQL, whose
//! SHA-384 is the checksum a database already migrated recorded), and unlike
//! the macro, adding a file here rebuilds the crate.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("../../migrations");
    let root = root.canonicalize().expect("the migrations directory");
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("migrations");
    fs::create_dir_all(&out).expect("OUT_DIR/migrations");
    for dir in fs::read_dir(&root).expect("read migrations/") {
        let dir = dir.expect("a migrations/ entry").path();
        if !dir.is_dir() {
            continue;
        }
        println!("cargo::rerun-if-changed={}", dir.display());
        let name = dir.file_name().and_then(|n| n.to_str()).expect("a UTF-8 directory name");
        fs::write(out.join(format!("{name}.rs")), migrator(&dir)).expect("write the generated migrator");
    }
}

/// `Migrator::with_migrations(vec![...])`, each migration as sqlx's own
/// resolver reads a file named `<version>_<description>.sql`.
fn migrator(dir: &Path) -> String {
    let mut files: Vec<_> =
        fs::read_dir(dir).expect("read a migrations directory").map(|e| e.expect("an entry").path()).collect();
    files.sort();
    let mut code = String::from("::sqlx::migrate::Migrator::with_migrations(::std::vec![\n");
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name");
        let Some((version, description)) = name.strip_suffix(".sql").and_then(|n| n.split_once('_')) else {
            panic!("{}: a migration is named <version>_<description>.sql", file.display());
        };
        assert!(
            !description.ends_with(".up") && !description.ends_with(".down"),
            "{}: reversible migrations are not used here",
            file.display()
        );
        let version: i64 = version.parse().unwrap_or_else(|_| panic!("{}: the version is a number", file.display()));
        let sql = fs::read_to_string(&file).expect("read a migration");
        let no_tx = sql.starts_with("-- no-transaction");
        writeln!(
            code,
            "    ::sqlx::migrate::Migration::new({version}, ::std::borrow::Cow::Borrowed({description:?}), \
             ::sqlx::migrate::MigrationType::Simple, ::sqlx::SqlSafeStr::into_sql_str(include_str!({path:?})), {no_tx}),",
            description = description.replace('_', " "),
            path = file.display().to_string(),
        )
        .expect("write to a String");
    }
    code.push_str("])\n");
    code
}

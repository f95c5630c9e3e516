//! `holdfast`: parse flags, run the command, print any error as one line.

mod cli;

use clap::Parser;

/// Every allocation of the process's Rust code (SQLite's own, in C, stay
/// with glibc: moving them too gained nothing measurable); see `mimalloc`
/// in the workspace's `Cargo.toml`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // Before any TLS client exists (reqwest, lettre, the storm tools).
    holdfast_server::tls::install_crypto_provider();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = cli.workers() {
        runtime.worker_threads(workers);
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("holdfast: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holdfast: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

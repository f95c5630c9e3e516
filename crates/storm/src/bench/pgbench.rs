//! What the PostgreSQL server itself commits, measured with `pgbench` in
//! the same run as `bench relay-cluster`: one transaction per message of
//! the relay's shape (a conversation's row updated, its event inserted),
//! each client on its own conversation as each relay pair is. The relay's
//! rate over this is what the group commit buys over one transaction per
//! message.

use std::time::Duration;

use anyhow::{Context, anyhow};
use holdfast_server::store::postgres;

/// Clients of the comparison: enough to keep the server's WAL flushes
/// grouped, as the issue that set the target measured it.
pub const CLIENTS: usize = 64;

const SETUP: &str = "\
CREATE TABLE conversations (id int PRIMARY KEY, last_seq bigint NOT NULL DEFAULT 0);
INSERT INTO conversations (id) SELECT generate_series(0, 1023);
CREATE TABLE events (conversation_id int NOT NULL REFERENCES conversations(id), seq bigint NOT NULL,
    body text NOT NULL, created_at bigint NOT NULL, PRIMARY KEY (conversation_id, seq));
";

const MESSAGE: &str = "\
BEGIN;
UPDATE conversations SET last_seq = last_seq + 1 WHERE id = :client_id RETURNING last_seq \\gset
INSERT INTO events VALUES (:client_id, :last_seq, 'Hello from the shop', 0);
END;
";

/// The shortest baseline: a shorter one reads a pause of the server's
/// disk (a checkpoint beside other work) as its whole rate.
const MIN_SECONDS: u64 = 5;

/// Transactions per second that `pgbench` commits on a fresh database of
/// the server at `server_url`, for `seconds` (at least five).
pub async fn tps(server_url: &str, seconds: u64) -> anyhow::Result<f64> {
    let name = format!("holdfast_pgbench_{}", holdfast_server::store::new_id().replace('-', ""));
    postgres::create_database(server_url, &name).await.map_err(|e| anyhow!("cannot create {name}: {e:?}"))?;
    // The URL as given, which libpq reads, with the new database in it.
    let mut url = reqwest::Url::parse(server_url).context("the database URL")?;
    url.set_path(&name);
    let measured = run(url.as_str(), seconds).await;
    if let Err(e) = postgres::drop_database(server_url, &name).await {
        eprintln!("warning: could not drop the database {name}: {e:?}");
    }
    measured
}

async fn run(url: &str, seconds: u64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let (setup, message) = (dir.path().join("setup.sql"), dir.path().join("message.sql"));
    std::fs::write(&setup, SETUP)?;
    std::fs::write(&message, MESSAGE)?;
    pgbench(&["-n", "-t", "1", "-c", "1", "-f", path(&setup)?, url], seconds).await?;
    let seconds = seconds.max(MIN_SECONDS);
    let clients = CLIENTS.to_string();
    let duration = seconds.to_string();
    // Prepared statements, as the server's driver uses them (and faster
    // than pgbench's default simple protocol: the stronger baseline).
    let args = ["-n", "-M", "prepared", "-c", &clients, "-j", "2", "-T", &duration, "-f", path(&message)?, url];
    // A run in which the server committed nothing at all was a stall, not
    // a rate (seen once on a CI machine with other tests loading the same
    // server): it is said and measured once more.
    let out = pgbench(&args, seconds).await?;
    if let Some(tps) = parse_tps(&out) {
        return Ok(tps);
    }
    eprintln!("bench: pgbench committed nothing in {seconds} s (the server stalled); measuring again");
    let out = pgbench(&args, seconds).await?;
    parse_tps(&out).ok_or_else(|| anyhow!("pgbench printed no tps twice:\n{out}"))
}

fn path(p: &std::path::Path) -> anyhow::Result<&str> {
    p.to_str().ok_or_else(|| anyhow!("a temporary path that is not UTF-8"))
}

async fn pgbench(args: &[&str], seconds: u64) -> anyhow::Result<String> {
    let run = tokio::process::Command::new("pgbench").args(args).kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(seconds + 60), run)
        .await
        .context("pgbench did not finish")?
        .context("cannot run pgbench (Debian: postgresql-client; scripts/test installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(output.status.success(), "pgbench failed: {}{text}", String::from_utf8_lossy(&output.stderr));
    Ok(text)
}

/// The `tps = …` of pgbench's summary (without connection time).
fn parse_tps(out: &str) -> Option<f64> {
    out.lines().find_map(|l| l.trim().strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_gives_the_rate() {
        let out = "number of failed transactions: 0 (0.000%)\nlatency average = 8.2 ms\n\
                   initial connection time = 41.8 ms\ntps = 7650.481203 (without initial connection time)\n";
        assert_eq!(parse_tps(out), Some(7650.481203));
        assert_eq!(parse_tps("pgbench: error: connection failed"), None);
    }
}

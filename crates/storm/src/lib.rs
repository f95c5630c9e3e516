//! Holdfast's rehearsal and load tools, commands of the `holdfast` binary
//! but never linked into the server library.
//!
//! `holdfast storm` (this file): rehearsals of the three May 2018 outages,
//! of the loss of a cluster node and of a rolling restart, against a real Holdfast over real
//! sockets (see `docs/resilience.md`). Each scenario starts a server itself
//! on a temporary data dir (or uses `--target`), drives clients from
//! several worker processes, prints live progress on stderr, a table, and
//! one final `key=value` line for scripts.
//!
//! - `server`    — provisions and starts a Holdfast child process (or a cluster of them).
//! - `worker`    — one client process, driven by JSON lines on stdio.
//! - `client`    — a reference protocol client: cursors, full-jitter backoff, outbox resend.
//! - `scenarios` — the rehearsals.
//! - `flood`     — `storm visitor-flood`: one address floods the widget's doors.
//! - `rehearsal` — a stand-in plan service that answers, hangs or fails as told.
//! - `bench`     — `holdfast bench`: relay throughput, idle sockets, soak, first send.
//! - `machine`   — what the machine gives beside a bench: steal time, a fixed work's CPU time.

pub mod bench;
pub mod client;
pub(crate) mod flood;
pub(crate) mod machine;
pub mod rehearsal;
pub(crate) mod scenarios;
pub mod server;
pub mod worker;

use clap::{Args, Subcommand};

pub use scenarios::{blip, login_flood, side_service};

#[derive(Subcommand, Debug)]
pub enum StormCommand {
    /// Every socket cut at once (a network blip); all resume.
    Blip {
        #[arg(long, default_value_t = 3000)]
        agents: usize,
        #[arg(long, default_value_t = 15000)]
        visitors: usize,
        #[command(flatten)]
        common: Common,
    },
    /// K agents log in at once while the dashboard is flooded and the plan
    /// service hangs.
    LoginFlood {
        #[arg(long, default_value_t = 300)]
        agents: usize,
        /// Dashboard load as a multiple of the dashboard lane's capacity.
        #[arg(long, default_value_t = 10)]
        overload: usize,
        #[command(flatten)]
        common: Common,
    },
    /// The plan service answers, hangs, fails, recovers: login and chat
    /// must not notice.
    SideService {
        #[command(flatten)]
        common: Common,
    },
    /// One address floods visitor sessions and messages while real
    /// visitors and an agent chat: the flood is limited per address, the
    /// real visitors are served, the chat's p99 holds.
    VisitorFlood {
        #[command(flatten)]
        common: Common,
    },
    /// A cluster loses a node: starts `--nodes` nodes on a fresh database,
    /// spreads the clients over them, `kill -9`s one mid-chat; its clients
    /// resume on the others.
    NodeLoss {
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=8))]
        nodes: u16,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// A release rolled over a cluster: starts `--nodes` nodes on a fresh
    /// database; while agents and visitors chat, drains each node in turn
    /// (SIGTERM) and starts it again. Nobody logs in again, nothing is lost.
    RollingRestart {
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=8))]
        nodes: u16,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Create the storm's agents in a data dir, for `--target` runs.
    Provision {
        #[arg(long, default_value_t = 3000)]
        agents: usize,
        #[arg(long, default_value = "./holdfast-data")]
        data: std::path::PathBuf,
    },
}

/// Where a cluster rehearsal runs.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    #[arg(long, default_value_t = 5000)]
    pub visitors: usize,
    /// Milliseconds between a visitor's messages (agents answer each one).
    #[arg(long, default_value_t = 3000)]
    pub message_every_ms: u64,
    /// PostgreSQL server to create the rehearsal's database on (it is
    /// dropped at the end); the URL's own database is only connected to.
    #[arg(long, env = "HOLDFAST_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    #[arg(long, env = "HOLDFAST_NATS_URL")]
    pub nats_url: String,
    /// Seconds of steady chat before the fault, between steps, and after.
    #[arg(long, default_value_t = 5)]
    pub phase_s: u64,
    /// Keep the rehearsal's database afterwards (its name is printed), to
    /// look into what happened.
    #[arg(long)]
    pub keep_database: bool,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Use a running Holdfast (started with fault injection, provisioned
    /// with `holdfast storm provision`) instead of starting one.
    #[arg(long)]
    pub target: Option<String>,
    /// Admin credentials on the target (`--target` only).
    #[arg(long, default_value = "storm-admin@storm.test")]
    pub admin_email: String,
    #[arg(long, default_value = server::STORM_PASSWORD)]
    pub admin_password: String,
    /// The provisioned site's widget key (`--target` only).
    #[arg(long)]
    pub widget_key: Option<String>,
    /// Seconds of steady chat before the fault and after recovery.
    #[arg(long, default_value_t = 5)]
    pub phase_s: u64,
}

impl Common {
    /// A server this tool starts itself (the benches that take no flags).
    pub fn local() -> Common {
        Common { target: None, admin_email: String::new(), admin_password: String::new(), widget_key: None, phase_s: 0 }
    }
}

pub async fn run(command: StormCommand) -> anyhow::Result<()> {
    match command {
        StormCommand::Blip { agents, visitors, common } => blip(agents, visitors, &common).await,
        StormCommand::LoginFlood { agents, overload, common } => login_flood(agents, overload, &common).await,
        StormCommand::SideService { common } => side_service(&common).await,
        StormCommand::VisitorFlood { common } => flood::visitor_flood(&common).await,
        StormCommand::NodeLoss { nodes, cluster } => scenarios::node_loss(nodes.into(), &cluster).await,
        StormCommand::RollingRestart { nodes, cluster } => scenarios::rolling_restart(nodes.into(), &cluster).await,
        StormCommand::Provision { agents, data } => {
            let site = server::provision(&data, agents).await?;
            println!("provisioned {agents} agents; widget key {}", site.widget_key);
            Ok(())
        }
    }
}

/// The p-th percentile (0–100) of `values` (sorted in place); 0 when empty.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (values.len() as f64 - 1.0)).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// Print the figures as a table, then the final machine-readable line.
pub fn finish(rows: &[(&str, String)]) {
    println!();
    for (k, v) in rows {
        println!("  {k:<22} {v}");
    }
    let line: Vec<String> = rows.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{}", line.join(" "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), 51.0);
        assert_eq!(percentile(&mut v, 99.0), 99.0);
        assert_eq!(percentile(&mut [], 99.0), 0.0);
    }

    #[test]
    fn backoff_has_full_jitter_under_a_cap() {
        let cap = std::time::Duration::from_secs(5);
        let base = std::time::Duration::from_millis(100);
        let d: Vec<_> = (0..200).map(|_| client::backoff(10, base, cap)).collect();
        assert!(d.iter().all(|x| *x <= cap));
        assert!(d.iter().any(|x| *x < cap / 4), "full jitter reaches near zero");
        assert!(client::backoff(0, base, cap) <= base);
    }
}

//! `holdfast incident …`, `holdfast monitor …` and `holdfast status export`:
//! the status page from the command line, acting on `--data DIR` (or a
//! cluster's `--database-url`) like the other admin commands, and safe
//! while servers run on it: notifications are queued in the store and
//! delivered by the server that runs the status page's side tasks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};

use super::{DataArg, detail, open_postgres, open_sqlite};
use holdfast_server::status::{
    IncidentInput, SmtpConfig, SmtpLogin, SmtpTls, Status, StatusConfig, export, monitor, notify,
};
use holdfast_server::store::status::{ComponentStatus, Impact, Incident, IncidentKind, IncidentStatus, StatusStore};
use holdfast_server::tls::ExtraRoots;

/// `serve`'s status page flags.
#[derive(Args, Debug, Clone)]
pub struct StatusServeArgs {
    /// Serve only this part: `status` runs the status page, its API and
    /// monitors apart from chat (another process or machine, same store).
    #[arg(long, value_parser = ["status"])]
    only: Option<String>,
    /// Public base URL of the status page (links in feeds and email).
    #[arg(long, env = "HOLDFAST_PUBLIC_URL")]
    public_url: Option<String>,
    /// Where the built-in probes reach chat (default: this server).
    #[arg(long, env = "HOLDFAST_PROBE_BASE")]
    probe_base: Option<String>,
    #[command(flatten)]
    email: SmtpArgs,
    /// Consecutive failed checks before a component counts as down.
    #[arg(long, env = "HOLDFAST_STATUS_FAIL_AFTER", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    status_fail_after: u32,
    /// Seconds of passing checks before an auto-opened incident moves to monitoring.
    #[arg(long, env = "HOLDFAST_STATUS_QUIET_SECS", default_value_t = 300)]
    status_quiet_secs: u64,
    /// Seconds in monitoring after which an auto-opened incident resolves itself
    /// (default: an operator resolves it).
    #[arg(long, env = "HOLDFAST_STATUS_AUTO_RESOLVE_SECS")]
    status_auto_resolve_secs: Option<u64>,
    /// The login probe logs in with its password on every this many checks
    /// (and after every failed one); the others refresh its session.
    #[arg(long, env = "HOLDFAST_STATUS_LOGIN_PROBE_EVERY", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    status_login_probe_every: u32,
    /// Milliseconds after which a login probe (login, then the agent
    /// socket's welcome) counts as failed.
    #[arg(long, env = "HOLDFAST_STATUS_LOGIN_PROBE_SLOW_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    status_login_probe_slow_ms: u64,
    /// Milliseconds after which a store probe (one write and one read of the
    /// chat store) counts as failed.
    #[arg(long, env = "HOLDFAST_STATUS_STORE_PROBE_SLOW_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    status_store_probe_slow_ms: u64,
    /// Accept webhook subscribers on private or loopback addresses, and
    /// deliver to them (by default only public addresses are reached).
    #[arg(long, env = "HOLDFAST_ALLOW_PRIVATE_WEBHOOKS")]
    allow_private_webhooks: bool,
    /// Let monitors check private or loopback addresses (by default only
    /// public ones; the built-in probes of this server always run).
    #[arg(long, env = "HOLDFAST_ALLOW_PRIVATE_MONITORS")]
    allow_private_monitors: bool,
    /// A PEM file of CA certificates that webhooks, HTTPS monitors and SMTP
    /// over TLS trust besides the system's roots (a private CA).
    #[arg(long, env = "HOLDFAST_STATUS_EXTRA_CA", value_name = "FILE")]
    status_extra_ca: Option<PathBuf>,
    /// The shortest monitor interval accepted, in milliseconds (default
    /// 5 s). Hidden: it is for tests of a cluster of real processes, whose
    /// monitors must come round in seconds; operators need no less.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    status_min_interval_ms: Option<u64>,
}

impl StatusServeArgs {
    pub fn apply(self, config: &mut StatusConfig) -> anyhow::Result<()> {
        config.only = self.only.as_deref() == Some("status");
        config.public_url = self.public_url;
        config.probe_base = self.probe_base;
        config.fail_after = self.status_fail_after;
        config.quiet_period = Duration::from_secs(self.status_quiet_secs);
        config.auto_resolve_after = self.status_auto_resolve_secs.map(Duration::from_secs);
        config.login_probe_every = self.status_login_probe_every;
        config.login_probe_slow = Duration::from_millis(self.status_login_probe_slow_ms);
        config.store_probe_slow = Duration::from_millis(self.status_store_probe_slow_ms);
        config.allow_private_webhooks = self.allow_private_webhooks;
        config.allow_private_monitors = self.allow_private_monitors;
        if let Some(ms) = self.status_min_interval_ms {
            config.min_interval = Duration::from_millis(ms);
        }
        if let Some(path) = &self.status_extra_ca {
            config.extra_roots = ExtraRoots::load(path).map_err(|e| anyhow!("--status-extra-ca {e}"))?;
        }
        config.smtp = self.email.config()?;
        if let Some(smtp) = &config.smtp {
            notify::mailer(smtp, &config.extra_roots).map_err(|e| anyhow!("--smtp: {e}"))?;
        }
        Ok(())
    }
}

/// `serve`'s flags for subscriber email.
#[derive(Args, Debug, Clone)]
struct SmtpArgs {
    /// SMTP relay for subscriber email, HOST:PORT (enables email
    /// subscriptions).
    #[arg(long, env = "HOLDFAST_SMTP")]
    smtp: Option<String>,
    /// The From address of subscriber email.
    #[arg(long, env = "HOLDFAST_SMTP_FROM", default_value = "status@holdfast.local")]
    smtp_from: String,
    /// How the connection to the relay is secured: none, opportunistic
    /// (STARTTLS when offered), starttls (required) or implicit (TLS from the
    /// start, port 465). Default: implicit on port 465, starttls with a
    /// login, else opportunistic.
    #[arg(long, env = "HOLDFAST_SMTP_TLS", value_name = "MODE")]
    smtp_tls: Option<String>,
    /// Log in to the relay as this user; the password comes from the
    /// environment (HOLDFAST_SMTP_PASSWORD) or --smtp-password-file.
    #[arg(long, env = "HOLDFAST_SMTP_USER")]
    smtp_user: Option<String>,
    /// A file holding the relay's password (one line).
    #[arg(long, env = "HOLDFAST_SMTP_PASSWORD_FILE", value_name = "FILE")]
    smtp_password_file: Option<PathBuf>,
    /// HOLDFAST_SMTP_PASSWORD: from the environment only, never a flag (the
    /// command line is visible to every user of the machine).
    #[arg(skip = std::env::var("HOLDFAST_SMTP_PASSWORD").ok().map(Password))]
    smtp_password: Option<Password>,
}

impl SmtpArgs {
    /// The SMTP settings, checked: a password only with a user, only over a
    /// connection that is always encrypted, from one place.
    fn config(self) -> anyhow::Result<Option<SmtpConfig>> {
        let Some(smtp) = self.smtp else {
            if self.smtp_tls.is_some() || self.smtp_user.is_some() || self.smtp_password_file.is_some() {
                bail!("--smtp-tls, --smtp-user and --smtp-password-file need --smtp HOST:PORT");
            }
            return Ok(None);
        };
        let (host, port) = smtp.rsplit_once(':').ok_or_else(|| anyhow!("--smtp must be HOST:PORT"))?;
        let port = port.parse().map_err(|_| anyhow!("--smtp must be HOST:PORT"))?;
        if !holdfast_server::auth::valid_email(&self.smtp_from) {
            bail!("--smtp-from {:?} is not a valid email address", self.smtp_from);
        }
        let password = match (self.smtp_password, &self.smtp_password_file) {
            (Some(_), Some(_)) => {
                bail!("give the SMTP password in HOLDFAST_SMTP_PASSWORD or --smtp-password-file, not both")
            }
            (Some(Password(p)), None) => Some(p),
            (None, Some(path)) => Some(read_password(path)?),
            (None, None) => None,
        };
        let login = match (self.smtp_user, password) {
            (Some(user), Some(password)) => Some(SmtpLogin { user, password }),
            (None, None) => None,
            (Some(_), None) => bail!("--smtp-user needs a password: HOLDFAST_SMTP_PASSWORD or --smtp-password-file"),
            (None, Some(_)) => bail!("an SMTP password needs --smtp-user"),
        };
        let tls = match self.smtp_tls.as_deref() {
            Some(mode) => SmtpTls::parse(mode)
                .ok_or_else(|| anyhow!("--smtp-tls {mode:?}: the mode must be one of {}", SmtpTls::CHOICES))?,
            None if port == 465 => SmtpTls::Implicit,
            None if login.is_some() => SmtpTls::StartTls,
            None => SmtpTls::Opportunistic,
        };
        if login.is_some() && !tls.always_encrypted() {
            bail!(
                "--smtp-tls {}: the password would be sent unencrypted; use starttls or implicit",
                self.smtp_tls.unwrap_or_default()
            );
        }
        Ok(Some(SmtpConfig { tls, login, ..SmtpConfig::new(host, port, self.smtp_from) }))
    }
}

/// A password from the environment; its `Debug` never shows it.
#[derive(Clone)]
struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

/// The first line of a password file (a trailing newline is not part of it).
fn read_password(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read --smtp-password-file {}: {e}", path.display()))?;
    let password = text.lines().next().unwrap_or("");
    if password.is_empty() {
        bail!("--smtp-password-file {} is empty", path.display());
    }
    Ok(password.to_owned())
}

#[derive(Subcommand, Debug)]
pub enum IncidentCommand {
    /// Open an incident; prints its id.
    Open {
        #[arg(long)]
        name: String,
        /// investigating, identified, monitoring or resolved.
        #[arg(long, default_value = "investigating")]
        status: String,
        /// none, minor, major or critical (default: from the components).
        #[arg(long)]
        impact: Option<String>,
        /// An affected component, by name or id, optionally with its state:
        /// `"Agent login=major_outage"` (default major_outage). Repeatable.
        #[arg(long)]
        component: Vec<String>,
        #[arg(long)]
        message: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// Post an update to an incident.
    Update {
        id: String,
        #[arg(long)]
        status: String,
        #[arg(long)]
        message: Option<String>,
        /// A component's new state: `"Agent login=operational"`. Repeatable.
        #[arg(long)]
        component: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// List incidents, newest first.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum MonitorCommand {
    /// Add an HTTP (`https://…`, `http://…`) or TCP (`tcp://host:port`) check
    /// for a component.
    Add {
        #[arg(long)]
        name: String,
        /// The component (name or id) this check speaks for.
        #[arg(long)]
        component: String,
        #[arg(long)]
        url: String,
        /// Seconds between checks.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=86_400))]
        interval: u64,
        /// Accept a private or loopback target (the server checks it only
        /// when it runs with --allow-private-monitors too).
        #[arg(long, env = "HOLDFAST_ALLOW_PRIVATE_MONITORS")]
        allow_private_monitors: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// List monitors.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// Delete a monitor (not a built-in probe).
    Delete {
        /// The monitor's id (`holdfast monitor list`).
        id: String,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum StatusCommand {
    /// Write a static copy of the status page, feeds and JSON API to DIR.
    Export {
        /// Where to write the copy.
        out: PathBuf,
        /// Keep running and rewrite the copy on every change.
        #[arg(long)]
        watch: bool,
        /// Public base URL the copy is served from (links in feeds and JSON).
        #[arg(long, env = "HOLDFAST_PUBLIC_URL")]
        public_url: Option<String>,
        #[command(flatten)]
        data: DataArg,
    },
}

async fn open_status(data: &DataArg, public_url: Option<String>) -> anyhow::Result<Status> {
    let store: Arc<dyn StatusStore> = match &data.database_url {
        Some(url) => Arc::new(open_postgres(url).await?.status_store()),
        None => Arc::new(open_sqlite(&data.dir).await?.status_store()),
    };
    let config = StatusConfig { public_url, ..StatusConfig::default() };
    Status::open(store, config, "http://127.0.0.1:8080").await.map_err(err)
}

/// A status page's error (or the server's), said as the server says it.
fn err(e: impl Into<holdfast_server::error::Error>) -> anyhow::Error {
    anyhow!("{}", detail(&e.into()))
}

/// `NAME[=STATE]` → (component id, state).
async fn component_arg(
    status: &Status,
    arg: &str,
    default: Option<ComponentStatus>,
) -> anyhow::Result<(String, ComponentStatus)> {
    let (name, state) = match arg.rsplit_once('=') {
        Some((n, s)) => {
            let s = ComponentStatus::parse(s.trim()).ok_or_else(|| {
                anyhow!("--component {arg:?}: the state must be one of {}", ComponentStatus::choices())
            })?;
            (n, s)
        }
        None => (arg, default.ok_or_else(|| anyhow!("--component {arg:?}: give a state, as NAME=STATE"))?),
    };
    let component = status.find_component(name).await.map_err(|_| anyhow!("no component named {name:?}"))?;
    Ok((component.id, state))
}

fn parse_status(s: &str, kind: Option<IncidentKind>) -> anyhow::Result<IncidentStatus> {
    let status =
        IncidentStatus::parse(s).ok_or_else(|| anyhow!("--status must be one of {}", IncidentStatus::choices()))?;
    if kind.is_some_and(|k| status.kind() != k) {
        bail!("--status {s} does not apply to an incident");
    }
    Ok(status)
}

fn print_incident(incident: &Incident, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(incident)?);
    } else {
        println!("{}  {:<13} {:<8} {}", incident.id, incident.status.as_str(), incident.impact.as_str(), incident.name);
    }
    Ok(())
}

pub async fn incident(command: IncidentCommand) -> anyhow::Result<()> {
    match command {
        IncidentCommand::Open { name, status, impact, component, message, json, data } => {
            let status_value = parse_status(&status, Some(IncidentKind::Incident))?;
            let impact = impact
                .map(|i| Impact::parse(&i).ok_or_else(|| anyhow!("--impact must be none, minor, major or critical")))
                .transpose()?;
            let page = open_status(&data, None).await?;
            let mut components = Vec::new();
            for c in &component {
                components.push(component_arg(&page, c, Some(ComponentStatus::MajorOutage)).await?);
            }
            let input = IncidentInput {
                name: Some(name),
                status: Some(status_value),
                impact,
                message,
                components,
                ..Default::default()
            };
            let incident = page.open_incident(input, false).await.map_err(err)?;
            print_incident(&incident, json)?;
        }
        IncidentCommand::Update { id, status, message, component, json, data } => {
            let status_value = IncidentStatus::parse(&status)
                .ok_or_else(|| anyhow!("--status must be one of {}", IncidentStatus::choices()))?;
            let page = open_status(&data, None).await?;
            let mut components = Vec::new();
            for c in &component {
                components.push(component_arg(&page, c, None).await?);
            }
            let incident = if status_value == IncidentStatus::Resolved && components.is_empty() {
                page.resolve_incident(&id, message).await
            } else {
                let input = IncidentInput { status: Some(status_value), message, components, ..Default::default() };
                page.update_incident(&id, input).await
            }
            .map_err(|e| match e {
                holdfast_server::status::error::Error::NotFound(_) => anyhow!("no incident with id {id}"),
                e => err(e),
            })?;
            print_incident(&incident, json)?;
        }
        IncidentCommand::List { json, data } => {
            let page = open_status(&data, None).await?;
            let mut all = page.store.incidents(IncidentKind::Incident, false, 1000).await.map_err(err)?;
            all.extend(page.store.incidents(IncidentKind::Maintenance, false, 1000).await.map_err(err)?);
            all.sort_by_key(|i| std::cmp::Reverse(i.created_at));
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for i in &all {
                    print_incident(i, false)?;
                }
            }
        }
    }
    Ok(())
}

pub async fn monitor(command: MonitorCommand) -> anyhow::Result<()> {
    match command {
        MonitorCommand::Add { name, component, url, interval, allow_private_monitors, json, data } => {
            monitor::check_target(&url, allow_private_monitors).map_err(err)?;
            let mut page = open_status(&data, None).await?;
            page.config.allow_private_monitors = allow_private_monitors;
            let m = page.add_monitor(&name, &component, &url, interval as i64 * 1000).await.map_err(|e| match e {
                holdfast_server::status::error::Error::NotFound(_) => anyhow!("no component named {component:?}"),
                e => err(e),
            })?;
            if json {
                println!("{}", serde_json::to_string(&m)?);
            } else {
                println!("monitor added: {} → {} every {} s, id {}", m.name, m.target, m.interval_ms / 1000, m.id);
            }
        }
        MonitorCommand::List { json, data } => {
            let page = open_status(&data, None).await?;
            let monitors = page.store.monitors().await.map_err(err)?;
            if json {
                println!("{}", serde_json::to_string(&monitors)?);
            } else {
                for m in monitors {
                    println!("{}  {:<30} {:>6} s  {}", m.id, m.name, m.interval_ms / 1000, m.target);
                }
            }
        }
        MonitorCommand::Delete { id, data } => {
            let page = open_status(&data, None).await?;
            page.delete_monitor(&id).await.map_err(|e| match e {
                holdfast_server::status::error::Error::NotFound(_) => anyhow!("no monitor with id {id}"),
                e => err(e),
            })?;
            println!("monitor deleted: {id}");
        }
    }
    Ok(())
}

pub async fn status(command: StatusCommand) -> anyhow::Result<()> {
    match command {
        StatusCommand::Export { out: dir, watch, public_url, data } => {
            let page = open_status(&data, public_url).await?;
            std::fs::create_dir_all(&dir).map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
            let mut version = page.store.status_version().await.map_err(err)?;
            let files = export::export(&page, &dir).await.map_err(err)?;
            println!("exported {files} files to {}", dir.display());
            if !watch {
                return Ok(());
            }
            // Poll the store: another process (the server, this CLI) changes it.
            let stop = holdfast_server::server::signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = &mut stop => return Ok(()),
                }
                let now = match page.store.status_version().await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %detail(&e), "cannot read the store");
                        continue;
                    }
                };
                if now != version {
                    version = now;
                    match export::export(&page, &dir).await {
                        Ok(n) => println!("exported {n} files to {}", dir.display()),
                        Err(e) => tracing::warn!(error = %detail(&e), "export failed"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        crate::cli::Cli::command().debug_assert();
    }

    fn smtp(relay: &str, tls: Option<&str>, login: bool) -> anyhow::Result<SmtpConfig> {
        let args = SmtpArgs {
            smtp: Some(relay.into()),
            smtp_from: "status@holdfast.test".into(),
            smtp_tls: tls.map(str::to_owned),
            smtp_user: login.then(|| "me".into()),
            smtp_password: login.then(|| Password("hunter2-secret".into())),
            smtp_password_file: None,
        };
        Ok(args.config()?.expect("configured"))
    }

    #[test]
    fn smtp_tls_defaults_to_implicit_on_465_and_to_starttls_with_a_login() {
        assert_eq!(smtp("mail.example:465", None, true).unwrap().tls, SmtpTls::Implicit);
        assert_eq!(smtp("mail.example:587", None, true).unwrap().tls, SmtpTls::StartTls);
        assert_eq!(smtp("127.0.0.1:25", None, false).unwrap().tls, SmtpTls::Opportunistic);
        assert_eq!(smtp("127.0.0.1:25", Some("None"), false).unwrap().tls, SmtpTls::None);
        assert_eq!(smtp("mail.example:2525", Some("implicit"), true).unwrap().tls, SmtpTls::Implicit);
        assert!(smtp("mail.example:587", Some("opportunistic"), true).is_err());
    }

    #[test]
    fn the_smtp_password_never_shows_in_debug_output() {
        let config = smtp("mail.example:587", None, true).unwrap();
        assert_eq!(config.login.as_ref().map(|l| l.password.as_str()), Some("hunter2-secret"));
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
        assert!(!format!("{:?}", Password("hunter2".into())).contains("hunter2"));
    }
}

//! Monitors: operator-defined HTTP and TCP checks plus the built-in probes
//! of Holdfast itself (the server's `status::probes`, through
//! [`BuiltinProbes`]), made over the network as a visitor or an agent would (a fresh connection per check, so a hung process is seen as
//! down, not silent). An operator's check reaches public addresses only
//! (`egress`), unless the installation allows private targets
//! (`--allow-private-monitors`); the built-in probes reach this server
//! wherever it listens.
//!
//! A component fails only after `fail_after` consecutive failed checks of
//! one of its monitors. A failing component opens an incident by itself
//! (`investigating`, component in `major_outage`, subscribers notified);
//! once every check has passed for `quiet_period` the incident moves to
//! `monitoring` and the component back to operational; an operator
//! resolves it, or it resolves itself after `auto_resolve_after`. The loop
//! runs in its own task with its own HTTP client: chat load cannot queue
//! it behind chat's work.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use holdfast_core::{now_ms, tls};

use super::{IncidentInput, Status, egress};
use crate::error::{Error, Result};
use crate::store::{ComponentStatus, IncidentKind, IncidentStatus, Monitor};

/// The built-in probes that do what a visitor, an agent and a message do,
/// through chat (the readiness probe is a plain HTTP check, made here).
/// This crate knows no chat: the server implements them
/// (`holdfast-server`'s `status::probes`).
pub trait BuiltinProbes: Send + Sync {
    /// Whether a built-in monitor's target is one of these rather than a
    /// URL (operators cannot make these: [`check_target`] accepts
    /// `http[s]://` and `tcp://` only).
    fn is_builtin(&self, target: &str) -> bool;

    /// One check; `Err` says why it failed, in words fit for the public page.
    fn check(&self, target: &str, timeout: Duration) -> impl Future<Output = Result<(), String>> + Send;
}

/// Check a monitor target: `http[s]://host[:port]/path` or `tcp://host:port`,
/// with no special address written in it unless `allow_private` (a name is
/// judged by its addresses at every check, `egress`).
pub fn check_target(target: &str, allow_private: bool) -> Result<String> {
    let target = target.trim();
    if target.len() > 2048 {
        return Err(Error::bad_request("url is too long (at most 2048 characters)"));
    }
    let url = reqwest::Url::parse(target).map_err(|e| Error::bad_request(format!("url is not a URL: {e}")))?;
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(Error::bad_request("url has no host"));
    };
    if !allow_private {
        // `tcp:` hosts are kept as written: read them as an http host is
        // (`0x7f.1` is 127.0.0.1) before judging them.
        let as_http = reqwest::Url::parse(&format!("http://{host}/"));
        let private =
            egress::check_written_url(&url).is_err() || as_http.is_ok_and(|u| egress::check_written_url(&u).is_err());
        if private {
            return Err(Error::bad_request(
                "url must be a public address (the operator can allow private ones: --allow-private-monitors)",
            ));
        }
    }
    match url.scheme() {
        "http" | "https" => Ok(url.to_string()),
        "tcp" if url.port().is_some() => {
            Ok(format!("tcp://{}:{}", url.host_str().unwrap_or(""), url.port().unwrap_or(0)))
        }
        "tcp" => Err(Error::bad_request("a tcp:// url needs a port")),
        _ => Err(Error::bad_request("url must be http://…, https://… or tcp://host:port")),
    }
}

/// The monitor loop's HTTP clients.
struct Clients {
    /// For the built-in probes of this server itself (which may well be on
    /// loopback or a private network), never for an operator's target.
    own: reqwest::Client,
    /// For operators' monitors: public addresses only (unless
    /// `allow_private_monitors`), redirects included.
    operators: reqwest::Client,
}

/// One check; `Err` says why it failed (words fit for the public page).
async fn check(
    clients: &Clients,
    probes: &impl BuiltinProbes,
    monitor: &Monitor,
    allow_private: bool,
    timeout: Duration,
) -> Result<(), String> {
    let target = monitor.target.as_str();
    if monitor.builtin {
        if probes.is_builtin(target) {
            return probes.check(target, timeout).await;
        }
        return http_check(&clients.own, target, timeout).await;
    }
    let url = reqwest::Url::parse(target).map_err(|e| format!("bad url: {e}"))?;
    if !allow_private && let Err(why) = egress::check_url(&url) {
        return Err(format!("connect failed: {why}"));
    }
    if url.scheme() == "tcp" {
        let (host, port) = (url.host_str().unwrap_or(""), url.port().unwrap_or(0));
        return match tokio::time::timeout(timeout, egress::tcp_connect(host, port, allow_private)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("connect failed: {e}")),
            Err(_) => Err("connect timed out".into()),
        };
    }
    http_check(&clients.operators, target, timeout).await
}

async fn http_check(http: &reqwest::Client, target: &str, timeout: Duration) -> Result<(), String> {
    match http.get(target).timeout(timeout).send().await {
        Ok(res) if res.status().as_u16() < 400 => Ok(()),
        Ok(res) => Err(format!("answered {}", res.status())),
        Err(e) => Err(tls::request_failure(&e)),
    }
}

/// What the loop remembers about one monitor.
struct Watch {
    next_due: Instant,
    failures: u32,
    last_error: String,
}

/// What the loop remembers about one component.
#[derive(Default)]
struct ComponentWatch {
    /// The incident this loop opened and still follows.
    incident: Option<String>,
    /// Last failed check of any of its monitors.
    last_failure: Option<Instant>,
    /// When the incident moved to monitoring.
    monitoring_since: Option<Instant>,
}

/// Run the monitors until the task is dropped. `probes` makes the built-in
/// probes, given the HTTP client of this server's own checks.
pub async fn run<P: BuiltinProbes>(status: Arc<Status>, probes: impl FnOnce(reqwest::Client) -> P + Send) {
    let allow_private = status.config.allow_private_monitors;
    let builder = |guarded: bool| {
        let builder = reqwest::Client::builder()
            // A fresh connection per check: a reused one would hide a
            // listener that no longer accepts, or a certificate replaced.
            .pool_max_idle_per_host(0)
            .user_agent("Holdfast-Monitor/1");
        if guarded {
            egress::guard(builder).redirect(egress::redirects(3, false))
        } else {
            builder.redirect(reqwest::redirect::Policy::limited(3))
        }
    };
    let own = tls::http_client(|| builder(false), &status.config.extra_roots);
    let operators = tls::http_client(|| builder(!allow_private), &status.config.extra_roots);
    let clients = match (own, operators) {
        (Ok(own), Ok(operators)) => Clients { own, operators },
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "monitors disabled: no HTTP client");
            return;
        }
    };
    let probes = probes(clients.own.clone());
    let mut watches: HashMap<String, Watch> = HashMap::new();
    let mut components: HashMap<String, ComponentWatch> = HashMap::new();
    // Follow incidents this loop opened before a restart.
    if let Ok(open) = status.store.incidents(IncidentKind::Incident, true, 100).await {
        for i in open.into_iter().filter(|i| i.auto) {
            for c in &i.components {
                let w = components.entry(c.clone()).or_default();
                w.incident = Some(i.id.clone());
                if i.status == IncidentStatus::Monitoring {
                    w.monitoring_since = Some(instant_of(i.monitoring_at.unwrap_or_else(now_ms)));
                }
            }
        }
    }
    loop {
        tokio::time::sleep(status.config.monitor_tick).await;
        let monitors = match status.store.monitors().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read monitors");
                continue;
            }
        };
        for m in &monitors {
            watches.entry(m.id.clone()).or_insert_with(|| resume_watch(m, &mut components));
        }
        let now = Instant::now();
        let due: Vec<&Monitor> =
            monitors.iter().filter(|m| watches.get(&m.id).is_none_or(|w| w.next_due <= now)).collect();
        let timeout = status.config.check_timeout;
        let results = futures_util::future::join_all(
            due.iter().map(|m| async { (*m, check(&clients, &probes, m, allow_private, timeout).await) }),
        )
        .await;
        let at = now_ms();
        for (monitor, result) in results {
            let interval = Duration::from_millis(monitor.interval_ms.max(1) as u64);
            let Some(watch) = watches.get_mut(&monitor.id) else { continue };
            watch.next_due = Instant::now() + interval;
            metrics::counter!("holdfast_status_checks_total", "ok" => if result.is_ok() { "true" } else { "false" })
                .increment(1);
            if let Err(e) = status.store.record_probe(&monitor.component_id, at, result.is_ok()).await {
                tracing::warn!(error = %e, "cannot record a probe result");
            }
            let error = result.err();
            match &error {
                None => watch.failures = 0,
                Some(error) => {
                    watch.failures += 1;
                    watch.last_error = error.clone();
                    components.entry(monitor.component_id.clone()).or_default().last_failure = Some(Instant::now());
                }
            }
            let failures = i64::from(watch.failures);
            if let Err(e) = status.store.record_check(&monitor.id, at, failures, error.as_deref()).await {
                tracing::warn!(error = %e, "cannot record a monitor's check");
            }
        }
        watches.retain(|id, _| monitors.iter().any(|m| &m.id == id));
        let watched: HashSet<&str> = monitors.iter().map(|m| m.component_id.as_str()).collect();
        for component_id in watched {
            let failing = monitors
                .iter()
                .filter(|m| m.component_id == component_id)
                .filter_map(|m| watches.get(&m.id).map(|w| (m, w)))
                .find(|(_, w)| w.failures >= status.config.fail_after);
            let watch = components.entry(component_id.to_owned()).or_default();
            if let Err(e) = evaluate(&status, component_id, failing, watch).await {
                tracing::warn!(error = %e, component = component_id, "cannot update the status page from monitors");
            }
        }
    }
}

/// Move a component's auto-opened incident along, given whether one of its
/// monitors is failing now.
async fn evaluate(
    status: &Status,
    component_id: &str,
    failing: Option<(&Monitor, &Watch)>,
    watch: &mut ComponentWatch,
) -> Result<()> {
    // An operator may have resolved it meanwhile: then it is no longer ours.
    let open = match &watch.incident {
        Some(id) => status.store.incident(id).await?.filter(|i| !i.status.is_closed()),
        None => None,
    };
    if open.is_none() {
        watch.incident = None;
        watch.monitoring_since = None;
    }
    match (failing, open) {
        (Some((monitor, w)), None) => {
            let component = status.store.component(component_id).await?.ok_or(Error::NotFound("component"))?;
            let incident = status
                .open_incident(
                    IncidentInput {
                        name: Some(format!("{} is not responding", component.name)),
                        status: Some(IncidentStatus::Investigating),
                        impact: None,
                        message: Some(format!(
                            "Holdfast's monitor \"{}\" failed {} checks in a row ({}). We are investigating.",
                            monitor.name, w.failures, w.last_error
                        )),
                        components: vec![(component_id.to_owned(), ComponentStatus::MajorOutage)],
                        ..Default::default()
                    },
                    true,
                )
                .await?;
            tracing::warn!(incident = %incident.id, component = %component.name, "incident opened by a monitor");
            watch.incident = Some(incident.id);
        }
        (Some((monitor, w)), Some(incident)) if incident.status == IncidentStatus::Monitoring => {
            status
                .update_incident(
                    &incident.id,
                    IncidentInput {
                        status: Some(IncidentStatus::Investigating),
                        message: Some(format!(
                            "The problem is back: monitor \"{}\" failed again ({}).",
                            monitor.name, w.last_error
                        )),
                        components: vec![(component_id.to_owned(), ComponentStatus::MajorOutage)],
                        ..Default::default()
                    },
                )
                .await?;
            watch.monitoring_since = None;
        }
        (None, Some(incident)) if incident.status == IncidentStatus::Investigating => {
            let quiet = watch.last_failure.is_none_or(|t| t.elapsed() >= status.config.quiet_period);
            if quiet {
                status
                    .update_incident(
                        &incident.id,
                        IncidentInput {
                            status: Some(IncidentStatus::Monitoring),
                            message: Some(format!(
                                "Checks have passed for {} s. We are monitoring the results.",
                                status.config.quiet_period.as_secs_f64()
                            )),
                            components: vec![(component_id.to_owned(), ComponentStatus::Operational)],
                            ..Default::default()
                        },
                    )
                    .await?;
                watch.monitoring_since = Some(Instant::now());
            }
        }
        (None, Some(incident)) if incident.status == IncidentStatus::Monitoring => {
            let since = *watch.monitoring_since.get_or_insert_with(Instant::now);
            if let Some(after) = status.config.auto_resolve_after
                && since.elapsed() >= after
            {
                status
                    .resolve_incident(
                        &incident.id,
                        Some("Checks have kept passing; this incident has been resolved.".into()),
                    )
                    .await?;
                watch.incident = None;
                watch.monitoring_since = None;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A monitor's watch as the store left it (a restart, or another node
/// taking the checks over): its failure count goes on, its next check is
/// due an interval after the last one, and its component's quiet period
/// counts from its last failure.
fn resume_watch(monitor: &Monitor, components: &mut HashMap<String, ComponentWatch>) -> Watch {
    if let Some(failed) = monitor.last_failure_at.map(instant_of) {
        let last = &mut components.entry(monitor.component_id.clone()).or_default().last_failure;
        *last = Some(last.map_or(failed, |t| t.max(failed)));
    }
    Watch {
        next_due: monitor.last_check_at.map_or_else(Instant::now, |at| instant_of(at + monitor.interval_ms.max(1))),
        failures: monitor.failures.clamp(0, i64::from(u32::MAX)) as u32,
        last_error: monitor.last_error.clone().unwrap_or_default(),
    }
}

/// The loop's (monotonic) time of a stored wall-clock time in Unix ms.
fn instant_of(at_ms: i64) -> Instant {
    let now = Instant::now();
    let ahead = at_ms - now_ms();
    let by = Duration::from_millis(ahead.unsigned_abs());
    if ahead >= 0 { now + by } else { now.checked_sub(by).unwrap_or(now) }
}

//! A static copy of the status page for any static web host: the page,
//! one page per incident, the feeds and every JSON API path, laid out as
//! the server serves them (`status/index.html`, `status/incidents/ID/index.html`,
//! `api/v2/summary.json`, …), so root-relative links keep working.

use std::path::{Path, PathBuf};

use super::Status;
use super::api::Summary;
use super::page::{self, UPTIME_DAYS};
use crate::error::{Error, Result};
use crate::store::IncidentKind;
use holdfast_core::now_ms;

/// Every file of the page as (relative path, contents).
pub async fn snapshot(status: &Status) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let summary = Summary::load(status).await?;
    let history = status.store.incidents(IncidentKind::Incident, false, 50).await?;
    let maintenances = status.store.incidents(IncidentKind::Maintenance, false, 50).await?;
    let today = now_ms().div_euclid(86_400_000);
    let uptime = status.store.uptime(today - UPTIME_DAYS + 1).await?;
    let json = |v: serde_json::Value| serde_json::to_vec_pretty(&v).unwrap_or_default();
    let mut files: Vec<(PathBuf, Vec<u8>)> = vec![
        ("status/index.html".into(), page::render_status(status, &summary, &history, &uptime, today).into_bytes()),
        ("status/status.css".into(), page::STYLESHEET.as_bytes().to_vec()),
        ("status/status.js".into(), page::SCRIPT.as_bytes().to_vec()),
        ("status/history.atom".into(), super::feed::atom(status, &history).into_bytes()),
        ("status/history.rss".into(), super::feed::rss(status, &history).into_bytes()),
        ("api/v2/summary.json".into(), json(summary.summary_json(status))),
        ("api/v2/status.json".into(), json(summary.status_json())),
        ("api/v2/components.json".into(), json(summary.components_json())),
        ("api/v2/incidents.json".into(), json(summary.incidents_json(status, &history))),
        ("api/v2/incidents/unresolved.json".into(), json(summary.incidents_json(status, &summary.incidents))),
        ("api/v2/scheduled-maintenances.json".into(), json(summary.maintenances_json(status, &maintenances))),
        (
            "api/v2/scheduled-maintenances/upcoming.json".into(),
            json(summary.maintenances_json(status, &super::api::upcoming(&summary.maintenances))),
        ),
        (
            "api/v2/scheduled-maintenances/active.json".into(),
            json(summary.maintenances_json(status, &super::api::active(&summary.maintenances))),
        ),
    ];
    for i in history.iter().chain(&maintenances) {
        files.push((
            PathBuf::from(format!("status/incidents/{}/index.html", i.id)),
            page::render_incident(status, i, &summary.components).into_bytes(),
        ));
    }
    Ok(files)
}

/// Write the snapshot under `dir`, each file replaced atomically (written
/// aside, then renamed) so a web server never serves half a file.
pub async fn export(status: &Status, dir: &Path) -> Result<usize> {
    let files = snapshot(status).await?;
    let count = files.len();
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        for (path, bytes) in files {
            let full = dir.join(&path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = full.with_extension("tmp-export");
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &full)?;
        }
        Ok(())
    })
    .await
    .map_err(Error::internal)?
    .map_err(|e| Error::internal(anyhow::anyhow!("cannot write the export: {e}")))?;
    Ok(count)
}

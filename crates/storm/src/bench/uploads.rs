//! `holdfast bench uploads`: what files in chat cost the server's memory.
//! `--uploads` visitors each upload one file of `--mb` MiB at once, over
//! real HTTP to a server in its own process; the figure is the server's
//! peak RSS during the uploads minus its RSS before them (after one small
//! upload, so the path has run once). An upload streams to disk, so the
//! growth should stay far below the bytes in flight.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::Target;
use crate::{Common, finish};

pub(super) async fn uploads(count: usize, mb: usize) -> anyhow::Result<()> {
    anyhow::ensure!(count > 0 && (1..=100).contains(&mb), "--uploads must be positive and --mb 1 to 100");
    eprintln!("bench uploads: {count} visitors upload {mb} MiB each at once");
    let target = Target::start(1, &[], &Common::local()).await?;
    // The site's limit must let the files through.
    let limit = json!({"attachments": {"max_bytes": mb * 1024 * 1024, "types": []}});
    let res = target
        .http
        .put(format!("{}/api/v1/admin/site/settings", target.base))
        .bearer_auth(&target.admin_token)
        .json(&limit)
        .send()
        .await?;
    anyhow::ensure!(res.status().is_success(), "cannot set the site's limit: {}", res.status());
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        tokens.push(target.visitor_session().await?.1);
    }
    // Different bytes per file: content addressing must not fold them.
    let file = |i: usize| {
        let mut b = vec![0u8; mb * 1024 * 1024];
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        bytes::Bytes::from(b)
    };
    let upload = |token: String, body: bytes::Bytes| {
        let (http, url) = (target.http.clone(), format!("{}/api/v1/visitor/attachments?name=bench.bin", target.base));
        async move {
            let res = http.post(url).bearer_auth(token).body(body).send().await?;
            anyhow::ensure!(res.status().as_u16() == 201, "upload refused: {}", res.status());
            anyhow::Ok(())
        }
    };
    upload(tokens[0].clone(), bytes::Bytes::from_static(b"warm-up")).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.rss_mb().unwrap_or(0.0);
    let bodies: Vec<bytes::Bytes> = (0..count).map(file).collect();
    let started = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for (token, body) in tokens.iter().cloned().zip(bodies) {
        all.spawn(upload(token, body));
    }
    let mut peak = before;
    let mut failed = 0;
    while !all.is_empty() {
        tokio::select! {
            done = all.join_next() => {
                if !matches!(done, Some(Ok(Ok(())))) {
                    failed += 1;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        peak = peak.max(target.rss_mb().unwrap_or(0.0));
    }
    let seconds = started.elapsed().as_secs_f64();
    finish(&[
        ("scenario", "uploads".into()),
        ("uploads", count.to_string()),
        ("mib_each", mb.to_string()),
        ("failed", failed.to_string()),
        ("seconds", format!("{seconds:.2}")),
        ("mib_per_s", format!("{:.0}", (count * mb) as f64 / seconds)),
        ("server_rss_before_mb", format!("{before:.1}")),
        ("server_rss_peak_mb", format!("{peak:.1}")),
        ("rss_growth_mb", format!("{:.1}", peak - before)),
    ]);
    Ok(())
}

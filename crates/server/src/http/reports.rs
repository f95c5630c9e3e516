//! `GET /api/v1/reports`: a range of days of the caller's site, as JSON or
//! as one table in CSV. Admins see the whole site; an agent sees only the
//! chats they had (their own row, and the groups as their chats make them).

use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{AgentAuth, ApiQuery};
use crate::admin::WidgetSettings;
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::reports::{self, DayRange};

#[derive(utoipa::OpenApi)]
#[openapi(paths(report))]
pub(super) struct Api;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/reports", get(report))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// First day, `YYYY-MM-DD`, in the site's time zone.
    from: String,
    /// Last day (included).
    to: String,
    /// `json` (default) or `csv`.
    #[serde(default)]
    format: Option<String>,
    /// With `csv`: `summary` (default), `groups`, `agents` or `heatmap`.
    #[serde(default)]
    table: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(ReportQuery),
    responses((status = 200, description = "The report (JSON), or one of its tables (CSV)",
        content((crate::reports::Report = "application/json"), (String = "text/csv")))))]
async fn report(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response> {
    // This handler's own work, on chat's runtime: rested after the
    // building (`low_priority::run`).
    let began = Instant::now();
    let site = state.store.site(&me.site_id).await?.ok_or(Error::NotFound("site"))?;
    let time_zone = WidgetSettings::from_stored(&site.settings).time_zone;
    let range = DayRange::parse(&q.from, &q.to, &time_zone)?;
    let own = (!me.role.is_admin()).then_some(me.agent_id.as_str());
    let mut worked = began.elapsed();
    let tally = reports::tally(state.store.as_ref(), &site.id, &range, own).await?;
    let began = Instant::now();
    let mut agents = state.store.agents(&site.id).await?;
    if own.is_some() {
        agents.retain(|a| a.id == me.agent_id);
    }
    let mut groups = state.store.groups(&site.id).await?;
    // A deleted group keeps its row while chats in the range name it.
    groups.retain(|g| g.deleted_at.is_none() || tally.saw_group(&g.id));
    let greetings = if me.role.is_admin() {
        state.store.greeting_figures(&site.id, range.start_ms, range.end_ms).await?
    } else {
        Vec::new()
    };
    worked += began.elapsed();
    // Building sorts every wait and duration of the range (a busy month:
    // 75,000 chats, three each), which would hold a runtime worker from
    // chat: on the thread of lowest priority instead (`low_priority`).
    let built = {
        let range = range.clone();
        crate::low_priority::run(worked, move || Ok(reports::build(&range, &tally, &groups, &agents)))
    };
    let mut report = built.await?;
    report.greetings = greetings;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(report).into_response()),
        "csv" => {
            let table = q.table.as_deref().unwrap_or("summary");
            let body = reports::csv(&report, table)?;
            let file = format!("attachment; filename=\"holdfast-{table}-{}-{}.csv\"", report.from, report.to);
            Ok((
                [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, file)],
                body,
            )
                .into_response())
        }
        _ => Err(Error::bad_request("format must be json or csv")),
    }
}

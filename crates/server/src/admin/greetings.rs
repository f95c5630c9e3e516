//! Proactive greetings, as admins define them: conditions on the page
//! (its URL, a `*` pattern), the referrer, seconds on the page, pages seen
//! this visit and new or returning visitor, and a greeting from a named
//! agent of the site or the team. The widget judges the conditions (it
//! knows the page); the server keeps the rules, hands the enabled ones to
//! a widget only when an agent could answer (someone online, within
//! hours), counts what widgets showed, and records the rule that greeted
//! each chat a visitor started by answering (`Chat::visitor_send`).

use serde::{Deserialize, Serialize};

use super::require_admin;
use crate::chat::protocol::AgentView;
use crate::chat::service::AgentCtx;
use crate::error::{Error, Result};
use crate::store::greetings::GreetingRule;
use crate::store::{Role, Store, new_id, now_ms};

const MAX_RULES: usize = 50;
const MAX_PATTERN: usize = 500;
const MAX_MESSAGE: usize = 500;
const MAX_SECONDS: i64 = 3600;
const MAX_PAGES: i64 = 100;

/// Which visitors a rule greets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VisitorKind {
    #[default]
    Any,
    New,
    Returning,
}

impl VisitorKind {
    fn as_str(self) -> &'static str {
        match self {
            VisitorKind::Any => "any",
            VisitorKind::New => "new",
            VisitorKind::Returning => "returning",
        }
    }
}

/// A rule as an admin writes it (a new one, or all of one again).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GreetingInput {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub url_pattern: String,
    #[serde(default)]
    pub referrer_pattern: String,
    #[serde(default)]
    pub min_seconds: i64,
    #[serde(default)]
    pub min_pages: i64,
    #[serde(default)]
    pub visitor: VisitorKind,
    /// An agent of the site; absent or null: the team.
    #[serde(default)]
    pub from_agent_id: Option<String>,
    pub message: String,
}

fn yes() -> bool {
    true
}

fn text(value: &str, what: &str, max: usize, required: bool) -> Result<String> {
    let v = value.trim();
    if (required && v.is_empty()) || v.chars().count() > max || v.chars().any(|c| c.is_control() && c != '\n') {
        let least = if required { 1 } else { 0 };
        return Err(Error::bad_request(format!("{what} must be {least} to {max} characters, no control characters")));
    }
    Ok(v.to_owned())
}

/// The rule an input makes on `site_id`, checked.
async fn checked(store: &dyn Store, site_id: &str, id: String, input: GreetingInput) -> Result<GreetingRule> {
    if !(0..=MAX_SECONDS).contains(&input.min_seconds) {
        return Err(Error::bad_request(format!("min_seconds must be 0 to {MAX_SECONDS}")));
    }
    if !(0..=MAX_PAGES).contains(&input.min_pages) {
        return Err(Error::bad_request(format!("min_pages must be 0 to {MAX_PAGES}")));
    }
    let from_agent_id = match input.from_agent_id.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => None,
        Some(agent_id) => {
            let agent = if agent_id.len() > 64 { None } else { store.agent(agent_id).await? };
            let ok = agent.filter(|a| a.site_id == site_id && a.active && a.role != Role::Probe);
            Some(ok.ok_or_else(|| Error::bad_request("from_agent_id is not an active agent of this site"))?.id)
        }
    };
    Ok(GreetingRule {
        id,
        site_id: site_id.to_owned(),
        name: text(&input.name, "name", 200, true)?,
        enabled: input.enabled,
        url_pattern: text(&input.url_pattern, "url_pattern", MAX_PATTERN, false)?,
        referrer_pattern: text(&input.referrer_pattern, "referrer_pattern", MAX_PATTERN, false)?,
        min_seconds: input.min_seconds,
        min_pages: input.min_pages,
        visitor: input.visitor.as_str().to_owned(),
        from_agent_id,
        message: text(&input.message, "message", MAX_MESSAGE, true)?,
        shown: 0,
        started: 0,
        created_at: now_ms(),
    })
}

pub async fn list(store: &dyn Store, admin: &AgentCtx) -> Result<Vec<GreetingRule>> {
    require_admin(admin)?;
    store.greetings(&admin.site_id).await
}

pub async fn create(store: &dyn Store, admin: &AgentCtx, input: GreetingInput) -> Result<GreetingRule> {
    require_admin(admin)?;
    if store.greetings(&admin.site_id).await?.len() >= MAX_RULES {
        return Err(Error::conflict(format!("a site has at most {MAX_RULES} greeting rules")));
    }
    let rule = checked(store, &admin.site_id, new_id(), input).await?;
    store.create_greeting(rule.clone()).await?;
    Ok(rule)
}

/// Replace a rule of the admin's site; the rule before and after.
pub async fn update(
    store: &dyn Store,
    admin: &AgentCtx,
    id: &str,
    input: GreetingInput,
) -> Result<(GreetingRule, GreetingRule)> {
    require_admin(admin)?;
    let before = one(store, &admin.site_id, id).await?;
    let rule = checked(store, &admin.site_id, before.id.clone(), input).await?;
    store.update_greeting(rule).await?;
    Ok((before, one(store, &admin.site_id, id).await?))
}

pub async fn delete(store: &dyn Store, admin: &AgentCtx, id: &str) -> Result<GreetingRule> {
    require_admin(admin)?;
    let before = one(store, &admin.site_id, id).await?;
    store.delete_greeting(&admin.site_id, &before.id).await?;
    Ok(before)
}

async fn one(store: &dyn Store, site_id: &str, id: &str) -> Result<GreetingRule> {
    if id.len() > 64 {
        return Err(Error::NotFound("greeting rule"));
    }
    store.greetings(site_id).await?.into_iter().find(|r| r.id == id).ok_or(Error::NotFound("greeting rule"))
}

/// A rule as the widget gets it: its conditions and what it says, from whom.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WidgetGreeting {
    pub id: String,
    pub url_pattern: String,
    pub referrer_pattern: String,
    pub min_seconds: i64,
    pub min_pages: i64,
    pub visitor: String,
    /// The agent's name; `None`: the team.
    pub from: Option<String>,
    pub message: String,
}

/// The enabled rules of a site for its widget, naming their agents (the
/// site's active agents, as `Chat::site_agents` keeps them).
pub async fn for_widget(store: &dyn Store, site_id: &str, agents: &[AgentView]) -> Result<Vec<WidgetGreeting>> {
    let rules = store.greetings(site_id).await?.into_iter().filter(|r| r.enabled);
    Ok(rules
        .into_iter()
        .map(|r| WidgetGreeting {
            from: r.from_agent_id.as_ref().and_then(|id| agents.iter().find(|a| &a.id == id)).map(|a| a.name.clone()),
            id: r.id,
            url_pattern: r.url_pattern,
            referrer_pattern: r.referrer_pattern,
            min_seconds: r.min_seconds,
            min_pages: r.min_pages,
            visitor: r.visitor,
            message: r.message,
        })
        .collect())
}

//! What an admin can change about their site, independent of HTTP: widget
//! settings (appearance, greeting, pre-chat fields, allowed origins),
//! agents, groups and canned responses. Every function takes the admin's
//! context and checks that what it touches belongs to the admin's site;
//! anything of another site is "not found". The role itself is checked by
//! the caller's extractor (`http::extract::AdminAuth`) and again here. An
//! operator is an admin of their site here too; only an operator makes or
//! changes an operator, and only an operator lists and makes sites (the
//! installation's, not a site's; `http::extract::OperatorAuth`).

pub mod greetings;
pub mod invitations;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::abuse::limits::VisitorLimits;
use crate::auth::{Auth, MAX_PASSWORD, normalize_email, valid_email};
use crate::bus::{Audience, Envelope, Payload};
use crate::chat::service::{AgentCtx, Chat};
use crate::error::{Error, Result};
use crate::hours::{self, HoursState, Schedule};
use crate::store::{Agent, AgentPhoto, AgentUpdate, CannedResponse, Group, NewAgent, Role, Store, now_ms};

/// Whether a pre-chat field is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldMode {
    Off,
    #[default]
    Optional,
    Required,
}

/// How soon the team typically replies, as the widget says it under the
/// team's name ("Typically replies in a few minutes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplyTime {
    /// Nothing is said.
    #[default]
    #[serde(rename = "none")]
    Unsaid,
    Minutes,
    Hours,
    Day,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    Left,
    #[default]
    Right,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Prechat {
    pub name: FieldMode,
    pub email: FieldMode,
}

/// A site's widget settings, as stored in `sites.settings` and sent to the
/// widget. Unknown fields are refused on input; missing ones get defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WidgetSettings {
    /// Accent colour, `#rrggbb`.
    pub color: String,
    /// First line the visitor reads when opening the panel.
    pub greeting: String,
    /// Which bottom corner the launcher sits in.
    pub position: Position,
    pub prechat: Prechat,
    /// Page origins (`https://shop.example`) allowed to open visitor
    /// sessions; empty means any origin.
    pub allowed_origins: Vec<String>,
    /// Minutes a visitor may wait with no agent reply before the chat
    /// counts as missed and the site's recipients are emailed
    /// (`outbox::missed`); 1 to 60.
    pub missed_chat_minutes: u32,
    /// An address that gets every closed chat's transcript (empty: none).
    /// Never sent to the widget.
    pub transcript_archive: String,
    /// The Reply-To of answers to offline messages (empty: the answering
    /// agent's address). Never sent to the widget.
    pub reply_to: String,
    /// The site's IANA time zone (`Europe/Oslo`): reports count days and
    /// hours in it, daylight-saving changes included.
    pub time_zone: String,
    /// How fast one visitor or address may start sessions, conversations
    /// and messages (`abuse::limits`).
    pub visitor_limits: VisitorLimits,
    /// Days after a conversation ends that its messages are kept; then
    /// `privacy::run_retention` erases them (0: kept for ever). Never sent
    /// to the widget.
    pub retention_days: u32,
    /// Days the audit log keeps an entry (0: for ever; else at least
    /// 30, the floor the store itself holds to). Never sent to the widget.
    pub audit_retention_days: u32,
    /// The site's business hours (`hours`), which every group without
    /// hours of its own keeps; `None`: always open. Outside them the
    /// widget offers the offline form. Never sent to the widget as such:
    /// it gets whether the team is in and until when.
    pub hours: Option<Schedule>,
    /// The widget's language for every visitor (`de`, `ar`…); empty: each
    /// visitor's browser language, if the widget speaks it, else English.
    pub language: String,
    /// The site's own words for any of the widget's strings, by key (the
    /// keys of `widget_i18n`), in whatever language the widget shows.
    pub strings: BTreeMap<String, String>,
    /// The team's name in the widget's header before an agent joins
    /// (empty: the site's name).
    pub team_name: String,
    /// The team's picture in the widget's header (an `http(s)` URL of an
    /// image; empty: the name's first letter).
    pub logo_url: String,
    /// How soon the team typically replies, said under its name.
    pub reply_time: ReplyTime,
    /// What visitors and agents may attach: largest file and types
    /// (`attachments`). Sent to the widget, which refuses a file before
    /// uploading it where it can tell.
    pub attachments: crate::attachments::AttachmentLimits,
}

impl Default for WidgetSettings {
    fn default() -> Self {
        WidgetSettings {
            color: "#2563eb".into(),
            greeting: "Hi! How can we help?".into(),
            position: Position::Right,
            prechat: Prechat::default(),
            allowed_origins: Vec::new(),
            missed_chat_minutes: crate::outbox::missed::DEFAULT_MINUTES,
            transcript_archive: String::new(),
            reply_to: String::new(),
            time_zone: "UTC".into(),
            visitor_limits: VisitorLimits::default(),
            retention_days: 0,
            audit_retention_days: 0,
            hours: None,
            language: String::new(),
            strings: BTreeMap::new(),
            attachments: Default::default(),
            team_name: String::new(),
            logo_url: String::new(),
            reply_time: ReplyTime::default(),
        }
    }
}

const MAX_GREETING: usize = 500;
const MAX_TEAM_NAME: usize = 60;
const MAX_URL: usize = 2048;
/// Longest override of one widget string, in characters.
const MAX_STRING: usize = 300;
const MAX_ORIGINS: usize = 50;
const MAX_MISSED_MINUTES: u32 = crate::outbox::missed::MAX_MINUTES;
/// Ten years.
const MAX_RETENTION_DAYS: u32 = 3650;

/// Whether `url` may be the widget's logo: absolute `http(s)` with a
/// host and no credentials (no `javascript:` or `data:`).
fn image_url(url: &str) -> bool {
    url.len() <= MAX_URL
        && reqwest::Url::parse(url).is_ok_and(|u| {
            matches!(u.scheme(), "https" | "http")
                && u.host().is_some()
                && u.username().is_empty()
                && u.password().is_none()
        })
}

impl WidgetSettings {
    /// The settings stored for a site; a stored value that no longer
    /// parses falls back to the defaults rather than breaking the widget.
    pub fn from_stored(value: &serde_json::Value) -> WidgetSettings {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// Check and normalise settings an admin sent.
    pub fn validated(mut self) -> Result<WidgetSettings> {
        let c = self.color.trim().to_ascii_lowercase();
        if c.len() != 7 || !c.starts_with('#') || !c[1..].chars().all(|ch| ch.is_ascii_hexdigit()) {
            return Err(Error::bad_request("color must look like #1a2b3c"));
        }
        self.color = c;
        self.greeting = self.greeting.trim().to_owned();
        if self.greeting.chars().count() > MAX_GREETING {
            return Err(Error::bad_request(format!("greeting is longer than {MAX_GREETING} characters")));
        }
        self.team_name = self.team_name.trim().to_owned();
        if self.team_name.chars().count() > MAX_TEAM_NAME || self.team_name.chars().any(char::is_control) {
            return Err(Error::bad_request(format!(
                "team_name must be at most {MAX_TEAM_NAME} characters on one line"
            )));
        }
        self.logo_url = self.logo_url.trim().to_owned();
        if !self.logo_url.is_empty() && !image_url(&self.logo_url) {
            return Err(Error::bad_request(format!(
                "logo_url must be an http or https URL of at most {MAX_URL} bytes, without a user or password"
            )));
        }
        if self.retention_days > MAX_RETENTION_DAYS {
            return Err(Error::bad_request(format!(
                "retention_days must be 0 (keep for ever) to {MAX_RETENTION_DAYS}"
            )));
        }
        if self.audit_retention_days != 0 && !(30..=MAX_RETENTION_DAYS).contains(&self.audit_retention_days) {
            return Err(Error::bad_request(format!(
                "audit_retention_days must be 0 (keep for ever) or 30 to {MAX_RETENTION_DAYS}"
            )));
        }
        if !(1..=MAX_MISSED_MINUTES).contains(&self.missed_chat_minutes) {
            return Err(Error::bad_request(format!("missed_chat_minutes must be 1 to {MAX_MISSED_MINUTES}")));
        }
        self.visitor_limits = self.visitor_limits.validated()?;
        self.attachments = self.attachments.validated()?;
        self.transcript_archive = self.transcript_archive.trim().to_owned();
        if !self.transcript_archive.is_empty() && !valid_email(&self.transcript_archive) {
            return Err(Error::bad_request("transcript_archive is not a valid email address"));
        }
        self.reply_to = self.reply_to.trim().to_owned();
        if !self.reply_to.is_empty() && !valid_email(&self.reply_to) {
            return Err(Error::bad_request("reply_to is not a valid email address"));
        }
        self.time_zone = self.time_zone.trim().to_owned();
        if self.time_zone.len() > 64 || jiff::tz::TimeZone::get(&self.time_zone).is_err() {
            return Err(Error::bad_request("time_zone must be an IANA time zone name like Europe/Oslo"));
        }
        if self.allowed_origins.len() > MAX_ORIGINS {
            return Err(Error::bad_request(format!("at most {MAX_ORIGINS} allowed origins")));
        }
        let mut origins = Vec::with_capacity(self.allowed_origins.len());
        for o in &self.allowed_origins {
            let o = normalize_origin(o)
                .ok_or_else(|| Error::bad_request(format!("{o:?} is not an origin like https://shop.example")))?;
            if !origins.contains(&o) {
                origins.push(o);
            }
        }
        self.allowed_origins = origins;
        self.hours = self.hours.map(Schedule::validated).transpose()?;
        self.language = self.language.trim().to_ascii_lowercase();
        if !self.language.is_empty() && !crate::widget_i18n::ships(&self.language) {
            return Err(Error::bad_request(format!("language {:?} is not one the widget speaks", self.language)));
        }
        let mut strings = BTreeMap::new();
        for (key, text) in std::mem::take(&mut self.strings) {
            if !crate::widget_i18n::keys().contains(&key) {
                return Err(Error::bad_request(format!("strings: the widget has no string {key:?}")));
            }
            let text = text.trim();
            if text.is_empty() || text.chars().count() > MAX_STRING {
                return Err(Error::bad_request(format!("strings.{key} must be 1 to {MAX_STRING} characters")));
            }
            strings.insert(key, text.to_owned());
        }
        self.strings = strings;
        Ok(self)
    }

    /// Refuse a page whose origin is not in a non-empty allow list.
    pub fn check_origin(&self, origin: Option<&str>) -> Result<()> {
        if self.allowed_origins.is_empty() {
            return Ok(());
        }
        match origin.and_then(normalize_origin) {
            Some(o) if self.allowed_origins.contains(&o) => Ok(()),
            Some(o) => Err(Error::forbidden(format!("this site's chat is not enabled on pages of {o}"))),
            None => Err(Error::forbidden("this site's chat only runs on its allowed origins; the page sent none")),
        }
    }
}

/// `scheme://host[:port]`, lower-cased, without a path; None if it is not
/// an http(s) origin.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"))?;
    let valid = !rest.is_empty()
        && rest.len() <= 253
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    valid.then_some(o)
}

pub(crate) fn require_admin(admin: &AgentCtx) -> Result<()> {
    if !admin.role.is_admin() {
        return Err(Error::forbidden("admins only"));
    }
    Ok(())
}

pub async fn set_settings(store: &dyn Store, admin: &AgentCtx, settings: WidgetSettings) -> Result<WidgetSettings> {
    require_admin(admin)?;
    let settings = settings.validated()?;
    let value = serde_json::to_value(&settings).map_err(Error::internal)?;
    store.set_site_settings(&admin.site_id, &value).await?;
    Ok(settings)
}

/// Set or clear (`None`: always open) the site's business hours, keeping
/// every other setting; the settings before and after (for the audit log).
pub async fn set_site_hours(
    store: &dyn Store,
    admin: &AgentCtx,
    hours: Option<Schedule>,
) -> Result<(WidgetSettings, WidgetSettings)> {
    require_admin(admin)?;
    let site = store.site(&admin.site_id).await?.ok_or(Error::NotFound("site"))?;
    let before = WidgetSettings::from_stored(&site.settings);
    let after = WidgetSettings { hours: hours.map(Schedule::validated).transpose()?, ..before.clone() };
    let value = serde_json::to_value(&after).map_err(Error::internal)?;
    store.set_site_settings(&admin.site_id, &value).await?;
    Ok((before, after))
}

/// A new agent as an admin asks for it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgentRequest {
    pub email: String,
    pub name: String,
    #[serde(default = "default_role")]
    pub role: Role,
    pub password: String,
    #[serde(default = "default_chat_limit")]
    pub chat_limit: i64,
}

fn default_role() -> Role {
    Role::Agent
}

fn default_chat_limit() -> i64 {
    5
}

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::bad_request("name must be 1 to 200 characters"));
    }
    Ok(name.to_owned())
}

fn check_chat_limit(limit: i64) -> Result<i64> {
    if !(1..=100).contains(&limit) {
        return Err(Error::bad_request("chat_limit must be 1 to 100"));
    }
    Ok(limit)
}

/// Admins give people the roles admin and agent; only an operator (or the
/// CLI) gives the operator role, which owns the whole installation; the
/// probe role is Holdfast's own (the status page's login probe).
fn check_role(role: Role, by: &AgentCtx) -> Result<Role> {
    match role {
        Role::Admin | Role::Agent => Ok(role),
        Role::Operator if by.role == Role::Operator => Ok(role),
        Role::Operator => Err(Error::forbidden("only an operator can make an operator")),
        Role::Probe => Err(Error::bad_request("role must be admin or agent")),
    }
}

/// An account made with a password, by an operator: they see every site,
/// so an address taken elsewhere tells them nothing new. A site's admin
/// invites instead (`invitations`), and never learns whether another site
/// knows the address.
pub async fn create_agent(auth: &Auth, store: &dyn Store, admin: &AgentCtx, req: NewAgentRequest) -> Result<Agent> {
    require_admin(admin)?;
    if admin.role != Role::Operator {
        return Err(Error::forbidden(
            "a site's admin adds people by invitation (POST /api/v1/admin/invitations); \
             only an operator sets their password",
        ));
    }
    check_role(req.role, admin)?;
    let email = normalize_email(&req.email);
    if !valid_email(&email) {
        return Err(Error::bad_request("email is not a valid address"));
    }
    let name = check_name(&req.name)?;
    check_password(&req.password)?;
    let chat_limit = check_chat_limit(req.chat_limit)?;
    // The bounded pool: an admin creating agents competes fairly with logins.
    let hash = auth.hashes.hash(&req.password).await?;
    store
        .create_agent(NewAgent {
            site_id: &admin.site_id,
            email: &email,
            name: &name,
            role: req.role,
            password_hash: &hash,
            chat_limit,
        })
        .await
}

/// Changes an admin may make to an agent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentChange {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub chat_limit: Option<i64>,
    /// A new password set by an admin: the agent's sessions end, and they
    /// log in with it.
    #[serde(default)]
    pub password: Option<String>,
    /// Whether the site's lead emails go to them.
    #[serde(default)]
    pub lead_emails: Option<bool>,
}

fn check_password(password: &str) -> Result<&str> {
    if password.chars().count() < 8 || password.len() > MAX_PASSWORD {
        return Err(Error::bad_request(format!("password must be 8 characters to {MAX_PASSWORD} bytes")));
    }
    Ok(password)
}

/// Change an agent of the admin's site. Deactivating ends the agent's
/// sessions and closes their sockets everywhere.
pub async fn update_agent(
    auth: &Auth,
    chat: &Chat,
    admin: &AgentCtx,
    agent_id: &str,
    change: AgentChange,
) -> Result<Agent> {
    require_admin(admin)?;
    let store = chat.store.as_ref();
    let target = agent_of_site(store, &admin.site_id, agent_id).await?;
    let role = change.role.map(|r| check_role(r, admin)).transpose()?;
    // A site's admin cannot demote or lock out the installation's operator.
    if target.role == Role::Operator && admin.role != Role::Operator {
        return Err(Error::forbidden("only an operator can change an operator"));
    }
    if target.id == admin.agent_id && (change.active == Some(false) || role.is_some_and(|r| r != target.role)) {
        return Err(Error::conflict("you cannot deactivate or demote yourself"));
    }
    if target.id == admin.agent_id && change.password.is_some() {
        return Err(Error::conflict("change your own password with your current one (POST /api/v1/me/password)"));
    }
    let password_hash = match change.password.as_deref().map(check_password).transpose()? {
        // The bounded pool: a reset competes fairly with logins.
        Some(password) => Some(auth.hashes.hash(password).await?),
        None => None,
    };
    let reset = password_hash.is_some();
    let update = AgentUpdate {
        name: change.name.as_deref().map(check_name).transpose()?,
        role,
        active: change.active,
        chat_limit: change.chat_limit.map(check_chat_limit).transpose()?,
        password_hash,
        lead_emails: change.lead_emails,
    };
    store.update_agent(&target.id, update).await?;
    if reset || change.active == Some(false) || change.role.is_some_and(|r| r != target.role) {
        // A role lives in the access token: end the sessions so the next
        // token carries the new one (deactivated agents cannot refresh; a
        // reset password must be the only way in).
        end_sessions(auth, chat, &admin.site_id, &target.id).await?;
    }
    agent_of_site(store, &admin.site_id, agent_id).await
}

/// End every session of an agent, on every node, and close their sockets.
async fn end_sessions(auth: &Auth, chat: &Chat, site_id: &str, agent_id: &str) -> Result<()> {
    for session_id in chat.store.revoke_agent_sessions(agent_id, now_ms()).await? {
        auth.forget_session(&session_id);
        chat.bus
            .publish(Envelope {
                site_id: site_id.to_owned(),
                audience: Audience::Session { session_id },
                event: None,
                payload: Payload::Disconnect { code: "session ended".into() },
            })
            .await;
    }
    chat.presence_changed(site_id).await;
    Ok(())
}

/// An agent changes their own password, proving the current one. Every
/// session ends, this one too: whoever else held one is out, and the agent
/// logs in again with the new password.
pub async fn change_own_password(auth: &Auth, chat: &Chat, me: &AgentCtx, current: &str, new: &str) -> Result<()> {
    let agent = chat.store.agent(&me.agent_id).await?.ok_or_else(|| Error::unauthorized("agent not found"))?;
    if current.len() > MAX_PASSWORD || !auth.hashes.verify(current, &agent.password_hash).await? {
        return Err(Error::forbidden("the current password is wrong"));
    }
    let hash = auth.hashes.hash(check_password(new)?).await?;
    chat.store.update_agent(&agent.id, AgentUpdate { password_hash: Some(hash), ..Default::default() }).await?;
    end_sessions(auth, chat, &me.site_id, &agent.id).await
}

/// Rename the admin's site (what visitors see in the widget's header).
pub async fn rename_site(store: &dyn Store, admin: &AgentCtx, name: &str) -> Result<()> {
    require_admin(admin)?;
    store.rename_site(&admin.site_id, &check_name(name)?).await
}

async fn agent_of_site(store: &dyn Store, site_id: &str, agent_id: &str) -> Result<Agent> {
    if agent_id.len() > 64 {
        return Err(Error::NotFound("agent"));
    }
    // The status probe is not the admin's to see or change.
    store
        .agent(agent_id)
        .await?
        .filter(|a| a.site_id == site_id && a.role != Role::Probe)
        .ok_or(Error::NotFound("agent"))
}

/// A group with its members, for the admin page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    #[serde(flatten)]
    pub group: GroupNow,
    pub members: Vec<String>,
}

pub async fn groups(store: &dyn Store, admin: &AgentCtx) -> Result<Vec<GroupView>> {
    require_admin(admin)?;
    let mut out = Vec::new();
    for group in groups_now(store, &admin.site_id).await? {
        let members = store.group_members(&group.group.id).await?;
        out.push(GroupView { group, members });
    }
    Ok(out)
}

/// A group with whether it is open now, for the console.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupNow {
    #[serde(flatten)]
    pub group: Group,
    /// Open or closed now under its hours (its own, else the site's),
    /// and until when.
    pub now: HoursState,
}

/// The site's groups, each with whether it is open now.
pub async fn groups_now(store: &dyn Store, site_id: &str) -> Result<Vec<GroupNow>> {
    let site = store.site(site_id).await?.ok_or(Error::NotFound("site"))?;
    let site_hours = WidgetSettings::from_stored(&site.settings).hours;
    let now = now_ms();
    let groups = store.groups(site_id).await?;
    Ok(groups
        .into_iter()
        .filter(|g| g.deleted_at.is_none())
        .map(|group| {
            let state = hours::state_of(hours::effective(group.hours.as_ref(), site_hours.as_ref()), now);
            GroupNow { group, now: state }
        })
        .collect())
}

pub async fn create_group(store: &dyn Store, admin: &AgentCtx, name: &str) -> Result<Group> {
    require_admin(admin)?;
    let name = check_name(name)?;
    store.create_group(&admin.site_id, &name, false).await
}

/// Changes an admin may make to a group.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupChange {
    #[serde(default)]
    pub name: Option<String>,
    /// The group's own address for its leads; `""` clears it.
    #[serde(default)]
    pub email: Option<String>,
    /// The group's own business hours; `null` clears them (the group
    /// keeps the site's again), absent leaves them.
    #[serde(default, deserialize_with = "present")]
    pub hours: Option<Option<Schedule>>,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Rename a group of the admin's site, or set its address; the group
/// before and after (for the audit log).
pub async fn update_group(
    store: &dyn Store,
    admin: &AgentCtx,
    group_id: &str,
    change: GroupChange,
) -> Result<(Group, Group)> {
    require_admin(admin)?;
    let group = group_of_site(store, &admin.site_id, group_id).await?;
    let name = change.name.as_deref().map(check_name).transpose()?;
    let email = match change.email.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(e) => {
            let e = normalize_email(e);
            if !valid_email(&e) {
                return Err(Error::bad_request("email is not a valid address"));
            }
            Some(Some(e))
        }
    };
    let hours = change.hours.map(|h| h.map(Schedule::validated).transpose()).transpose()?;
    let hours = hours.as_ref().map(Option::as_ref);
    store.update_group(&group.id, name.as_deref(), email.as_ref().map(|e| e.as_deref()), hours).await?;
    let after = group_of_site(store, &admin.site_id, group_id).await?;
    Ok((group, after))
}

async fn group_of_site(store: &dyn Store, site_id: &str, group_id: &str) -> Result<Group> {
    if group_id.len() > 64 {
        return Err(Error::NotFound("group"));
    }
    // A deleted group is no longer the admin's to change.
    store
        .group(group_id)
        .await?
        .filter(|g| g.site_id == site_id && g.deleted_at.is_none())
        .ok_or(Error::NotFound("group"))
}

/// An agent's own choice about the site's lead emails.
pub async fn set_own_lead_emails(store: &dyn Store, me: &AgentCtx, on: bool) -> Result<Agent> {
    store.update_agent(&me.agent_id, AgentUpdate { lead_emails: Some(on), ..Default::default() }).await?;
    store.agent(&me.agent_id).await?.ok_or_else(|| Error::unauthorized("agent not found"))
}

pub async fn add_to_group(store: &dyn Store, admin: &AgentCtx, group_id: &str, agent_id: &str) -> Result<()> {
    require_admin(admin)?;
    let agent = agent_of_site(store, &admin.site_id, agent_id).await?;
    let group = group_of_site(store, &admin.site_id, group_id).await?;
    store.add_agent_to_group(&agent.id, &group.id).await
}

/// Longest canned response body, in characters (a message's limit).
const MAX_CANNED_BODY: usize = crate::chat::protocol::MAX_BODY_CHARS;

pub async fn create_canned(store: &dyn Store, admin: &AgentCtx, shortcut: &str, body: &str) -> Result<CannedResponse> {
    require_admin(admin)?;
    let (shortcut, body) = check_canned(shortcut, body)?;
    store.create_canned_response(&admin.site_id, &shortcut, body).await
}

/// Change a canned response of the admin's site.
pub async fn update_canned(
    store: &dyn Store,
    admin: &AgentCtx,
    id: &str,
    shortcut: &str,
    body: &str,
) -> Result<CannedResponse> {
    require_admin(admin)?;
    let (shortcut, body) = check_canned(shortcut, body)?;
    if id.len() > 64 {
        return Err(Error::NotFound("canned response"));
    }
    store.update_canned_response(&admin.site_id, id, &shortcut, body).await?.ok_or(Error::NotFound("canned response"))
}

/// A shortcut (lowercase, without its `/`) and a body, checked.
fn check_canned<'a>(shortcut: &str, body: &'a str) -> Result<(String, &'a str)> {
    let shortcut = shortcut.trim().trim_start_matches('/').to_ascii_lowercase();
    let valid = !shortcut.is_empty()
        && shortcut.len() <= 32
        && shortcut.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(Error::bad_request("shortcut must be 1 to 32 letters, digits, - or _"));
    }
    let body = body.trim();
    if body.is_empty() || body.chars().count() > MAX_CANNED_BODY {
        return Err(Error::bad_request(format!("body must be 1 to {MAX_CANNED_BODY} characters")));
    }
    Ok((shortcut, body))
}

/// Take an agent of the admin's site out of one of its groups.
pub async fn remove_from_group(store: &dyn Store, admin: &AgentCtx, group_id: &str, agent_id: &str) -> Result<()> {
    require_admin(admin)?;
    let agent = agent_of_site(store, &admin.site_id, agent_id).await?;
    let group = group_of_site(store, &admin.site_id, group_id).await?;
    if !store.remove_agent_from_group(&agent.id, &group.id).await? {
        return Err(Error::NotFound("member"));
    }
    Ok(())
}

pub async fn delete_canned(store: &dyn Store, admin: &AgentCtx, id: &str) -> Result<()> {
    require_admin(admin)?;
    if id.len() > 64 || !store.delete_canned_response(&admin.site_id, id).await? {
        return Err(Error::NotFound("canned response"));
    }
    Ok(())
}

// ----- the installation's operator -------------------------------------------

fn require_operator(operator: &AgentCtx) -> Result<()> {
    if operator.role != Role::Operator {
        return Err(Error::forbidden("the installation's operator only"));
    }
    Ok(())
}

/// A site as the operator's list shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SiteSummary {
    pub id: String,
    pub name: String,
    pub widget_key: String,
    pub created_at: i64,
}

/// Every site of the installation, oldest first.
pub async fn sites(store: &dyn Store, operator: &AgentCtx) -> Result<Vec<SiteSummary>> {
    require_operator(operator)?;
    let sites = store.sites().await?;
    Ok(sites
        .into_iter()
        .map(|s| SiteSummary { id: s.id, name: s.name, widget_key: s.widget_key, created_at: s.created_at })
        .collect())
}

/// A new site and its first admin, as the operator asks for them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSiteRequest {
    pub name: String,
    pub admin: NewSiteAdmin,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSiteAdmin {
    pub email: String,
    pub name: String,
    pub password: String,
}

/// Make a site with its first admin (role `admin`: it runs that site and
/// nothing else). Everything is checked, and the password hashed, before
/// anything is written; should the admin's email be taken between the
/// check and the write, the site stays without an admin and the error says
/// so (the CLI or this API can then give it one).
pub async fn create_site(
    auth: &Auth,
    store: &dyn Store,
    operator: &AgentCtx,
    req: NewSiteRequest,
) -> Result<(SiteSummary, Agent)> {
    require_operator(operator)?;
    let site_name = check_name(&req.name)?;
    if site_name.chars().any(char::is_control) {
        return Err(Error::bad_request("name must not contain control characters"));
    }
    let email = normalize_email(&req.admin.email);
    if !valid_email(&email) {
        return Err(Error::bad_request("admin.email is not a valid address"));
    }
    let admin_name = check_name(&req.admin.name)?;
    if req.admin.password.chars().count() < 8 || req.admin.password.len() > MAX_PASSWORD {
        return Err(Error::bad_request(format!("admin.password must be 8 characters to {MAX_PASSWORD} bytes")));
    }
    if store.agent_by_email(&email).await?.is_some() {
        return Err(Error::conflict("an agent with that email exists"));
    }
    let hash = auth.hashes.hash(&req.admin.password).await?;
    let site = store.create_site(&site_name).await?;
    let admin = store
        .create_agent(NewAgent {
            site_id: &site.id,
            email: &email,
            name: &admin_name,
            role: Role::Admin,
            password_hash: &hash,
            chat_limit: default_chat_limit(),
        })
        .await
        .map_err(|e| match e {
            Error::Conflict(_) => Error::conflict("the site was made, but its admin's email was taken meanwhile"),
            e => e,
        })?;
    let summary =
        SiteSummary { id: site.id, name: site.name, widget_key: site.widget_key, created_at: site.created_at };
    Ok((summary, admin))
}

/// The largest agent photo, in bytes: a picture shown at most 64 px wide
/// needs far less, and every visitor's browser may load it.
pub const MAX_PHOTO_BYTES: usize = 512 * 1024;

/// An uploaded photo as it is kept: a raster image (PNG, JPEG, GIF or
/// WebP) by its first bytes, as attachments are typed (`attachments::sniff`,
/// never a name or a header), a JPEG without its metadata (EXIF with its
/// GPS position). SVG, HTML and anything else are refused: the photo is
/// served to every visitor's browser.
pub fn photo_from_upload(bytes: &[u8]) -> Result<AgentPhoto> {
    if bytes.is_empty() {
        return Err(Error::bad_request("the photo is empty"));
    }
    if bytes.len() > MAX_PHOTO_BYTES {
        return Err(Error::TooLarge(format!("a photo may be at most {} KiB", MAX_PHOTO_BYTES / 1024).into()));
    }
    let content_type = crate::attachments::sniff(&bytes[..bytes.len().min(8192)]);
    if !crate::attachments::is_inline(content_type) {
        return Err(Error::Unsupported(
            format!("a photo must be a PNG, JPEG, GIF or WebP image, not {content_type}").into(),
        ));
    }
    let bytes = if content_type == "image/jpeg" {
        crate::attachments::jpeg_without_metadata(bytes).map_err(|_| Error::bad_request("the JPEG image is damaged"))?
    } else {
        bytes.to_vec()
    };
    Ok(AgentPhoto { content_type: content_type.to_owned(), bytes })
}

/// Set or remove (`None`) the photo of `agent_id`, which the caller has
/// checked is of `site_id`; the site's consoles hear it.
async fn set_photo(chat: &Chat, site_id: &str, agent_id: &str, photo: Option<AgentPhoto>) -> Result<Agent> {
    chat.store.set_agent_photo(agent_id, photo, now_ms()).await?;
    chat.agent_photo_changed(site_id, agent_id).await?;
    agent_of_site(chat.store.as_ref(), site_id, agent_id).await
}

/// Any agent: set or remove their own photo.
pub async fn set_own_photo(chat: &Chat, me: &AgentCtx, photo: Option<AgentPhoto>) -> Result<Agent> {
    set_photo(chat, &me.site_id, &me.agent_id, photo).await
}

/// An admin: remove the photo of an agent of their site (one that should
/// not be shown to visitors).
pub async fn remove_photo(chat: &Chat, admin: &AgentCtx, agent_id: &str) -> Result<Agent> {
    require_admin(admin)?;
    let target = agent_of_site(chat.store.as_ref(), &admin.site_id, agent_id).await?;
    set_photo(chat, &admin.site_id, &target.id, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_normalised_and_checked() {
        let s = WidgetSettings {
            color: " #AABBCC ".into(),
            allowed_origins: vec!["HTTPS://Shop.Example/".into(), "https://shop.example".into()],
            ..Default::default()
        };
        let s = s.validated().unwrap();
        assert_eq!(s.color, "#aabbcc");
        assert_eq!(s.allowed_origins, vec!["https://shop.example".to_owned()]);
        let bad = WidgetSettings { color: "red;}".into(), ..Default::default() };
        assert!(bad.validated().is_err());
        let bad = WidgetSettings { allowed_origins: vec!["javascript:alert(1)".into()], ..Default::default() };
        assert!(bad.validated().is_err());
    }

    #[test]
    fn origins_are_checked_only_when_listed() {
        let open = WidgetSettings::default();
        assert!(open.check_origin(None).is_ok());
        let closed = WidgetSettings { allowed_origins: vec!["https://a.example".into()], ..Default::default() };
        assert!(closed.check_origin(Some("https://a.example")).is_ok());
        assert!(closed.check_origin(Some("https://b.example")).is_err());
        assert!(closed.check_origin(None).is_err());
        assert!(closed.check_origin(Some("null")).is_err());
    }
}

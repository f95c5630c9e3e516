//! Bans: an agent refuses a visitor chat — by the visitor, and optionally
//! by the address they came from or a network (CIDR) — with a reason and
//! an optional end; the site's admins list and lift them.
//!
//! Every node holds the bans in force in memory ([`Bans`]), so the checks
//! on a visitor session, a socket's hello, a message and an offline
//! message cost no store read. A ban made or lifted on one node reaches
//! the others on the bus (`Payload::Ban`, with the ban itself, so they
//! apply it without a read) and the banned visitor's sockets are closed
//! with `banned` wherever they are. The bus is not the record: every node
//! also compares the store's newest change with the one it loaded every
//! [`SYNC_EVERY`], and reloads when they differ.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::client_ip::canonical;
use crate::bus::{Audience, Envelope, Payload};
use crate::chat::service::{AgentCtx, Chat};
use crate::error::{Error, Result};
use crate::store::bans::Ban;
use crate::store::{Author, Store, new_id, now_ms};

/// How often a node checks the store for bans it did not hear of.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);

/// Longest reason, in characters.
pub const MAX_REASON: usize = 500;
/// Longest ban: ten years, in minutes (longer is "until lifted").
const MAX_MINUTES: u64 = 10 * 365 * 24 * 60;
/// The widest networks a ban may name: a /16 of IPv4, a /32 of IPv6. A
/// wider one would refuse whole providers, or everyone.
const MIN_V4_PREFIX: u8 = 16;
const MIN_V6_PREFIX: u8 = 32;

/// The bans of one site in force, as a node holds them.
#[derive(Default)]
struct SiteBans {
    visitors: HashMap<String, Ban>,
    nets: Vec<(IpNet, Ban)>,
}

impl SiteBans {
    fn insert(&mut self, ban: Ban) {
        self.remove(&ban.id);
        if let Some(v) = &ban.visitor_id {
            self.visitors.insert(v.clone(), ban.clone());
        }
        if let Some(net) = ban.cidr.as_deref().and_then(|c| c.parse::<IpNet>().ok()) {
            self.nets.push((net, ban));
        }
    }

    fn remove(&mut self, id: &str) {
        self.visitors.retain(|_, b| b.id != id);
        self.nets.retain(|(_, b)| b.id != id);
    }

    fn refuses(&self, visitor_id: Option<&str>, ip: Option<IpAddr>, now: i64) -> bool {
        let by_visitor = visitor_id.and_then(|v| self.visitors.get(v)).is_some_and(|b| b.in_force(now));
        let by_address =
            ip.map(canonical).is_some_and(|ip| self.nets.iter().any(|(net, b)| net.contains(&ip) && b.in_force(now)));
        by_visitor || by_address
    }
}

/// The bans in force on this node, every site.
#[derive(Default)]
pub struct Bans {
    sites: RwLock<HashMap<String, SiteBans>>,
    /// The store's newest change when the bans were last loaded.
    loaded: Mutex<Option<Option<i64>>>,
}

impl Bans {
    /// `Err(Banned)` if a ban of the site in force names the visitor or
    /// covers the address.
    pub fn check(&self, site_id: &str, visitor_id: Option<&str>, ip: Option<IpAddr>) -> Result<()> {
        let sites = self.sites.read().unwrap_or_else(|p| p.into_inner());
        match sites.get(site_id) {
            Some(site) if site.refuses(visitor_id, ip, now_ms()) => {
                metrics::counter!("holdfast_banned_refusals_total").increment(1);
                Err(Error::Banned)
            }
            _ => Ok(()),
        }
    }

    /// A ban made or lifted (here, or on another node: from the bus).
    pub fn apply(&self, ban: &Ban) {
        let mut sites = self.sites.write().unwrap_or_else(|p| p.into_inner());
        let site = sites.entry(ban.site_id.clone()).or_default();
        if ban.in_force(now_ms()) {
            site.insert(ban.clone());
        } else {
            site.remove(&ban.id);
        }
    }

    /// Reload the bans in force if the store changed since the last load
    /// (at start, every [`SYNC_EVERY`]); true when it reloaded.
    pub async fn sync(&self, store: &dyn Store) -> Result<bool> {
        let changed = store.bans_changed_at().await?;
        let known = *self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if known == Some(changed) {
            return Ok(false);
        }
        let mut sites: HashMap<String, SiteBans> = HashMap::new();
        for ban in store.active_bans(now_ms()).await? {
            sites.entry(ban.site_id.clone()).or_default().insert(ban);
        }
        *self.sites.write().unwrap_or_else(|p| p.into_inner()) = sites;
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = Some(changed);
        Ok(true)
    }
}

/// What an agent asks for (`POST /api/v1/bans`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// The visitor to ban (their conversations end).
    #[serde(default)]
    pub visitor_id: Option<String>,
    /// Also ban the address the visitor last came from (never shown).
    #[serde(default)]
    pub ip: bool,
    /// Also, or instead, ban an address or network (`203.0.113.0/24`).
    #[serde(default)]
    pub cidr: Option<String>,
    pub reason: String,
    /// Minutes until the ban ends by itself; absent: until lifted.
    #[serde(default)]
    pub expires_in_minutes: Option<u64>,
}

/// An address or network as a ban stores it: canonical (`203.0.113.0/24`,
/// host bits cleared; a lone address is a /32 or /128), not too wide.
pub fn parse_cidr(text: &str) -> Result<IpNet> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(canonical(ip)),
            Err(_) => {
                return Err(Error::bad_request(format!("{text:?} is not an address or a network like 203.0.113.0/24")));
            }
        },
    };
    let too_wide = match net {
        IpNet::V4(n) => n.prefix_len() < MIN_V4_PREFIX,
        IpNet::V6(n) => n.prefix_len() < MIN_V6_PREFIX,
    };
    if too_wide {
        return Err(Error::bad_request(format!(
            "{net} is too wide to ban: at most a /{MIN_V4_PREFIX} of IPv4 or a /{MIN_V6_PREFIX} of IPv6"
        )));
    }
    Ok(net)
}

/// An agent bans: the ban is stored, every node hears of it, the
/// visitor's sockets are closed and their open conversations end.
pub async fn ban(chat: &Chat, me: &AgentCtx, req: BanRequest) -> Result<Ban> {
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(Error::bad_request("say why: a ban needs a reason"));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(Error::bad_request(format!("the reason is longer than {MAX_REASON} characters")));
    }
    let visitor = match req.visitor_id.as_deref() {
        Some(id) if id.len() <= 64 => {
            Some(chat.store.visitor(id).await?.filter(|v| v.site_id == me.site_id).ok_or(Error::NotFound("visitor"))?)
        }
        Some(_) => return Err(Error::NotFound("visitor")),
        None => None,
    };
    let cidr = match (req.ip, req.cidr.as_deref()) {
        (true, Some(_)) => return Err(Error::bad_request("give either ip or cidr, not both")),
        (true, None) => {
            let v = visitor
                .as_ref()
                .ok_or_else(|| Error::bad_request("ip bans the visitor's address: name the visitor"))?;
            let ip = chat.store.visitor_ip(&v.id).await?;
            let ip = ip.ok_or_else(|| Error::conflict("this visitor's address is not known; ban a network instead"))?;
            Some(parse_cidr(&ip)?)
        }
        (false, Some(text)) => Some(parse_cidr(text)?),
        (false, None) => None,
    };
    if visitor.is_none() && cidr.is_none() {
        return Err(Error::bad_request("name a visitor, an address or a network to ban"));
    }
    let now = now_ms();
    let expires_at = match req.expires_in_minutes {
        None => None,
        Some(m) if (1..=MAX_MINUTES).contains(&m) => Some(now + (m as i64) * 60_000),
        Some(_) => return Err(Error::bad_request(format!("expires_in_minutes must be 1 to {MAX_MINUTES}"))),
    };
    let ban = Ban {
        id: new_id(),
        site_id: me.site_id.clone(),
        visitor_id: visitor.as_ref().map(|v| v.id.clone()),
        cidr: cidr.map(|n| n.to_string()),
        reason: reason.to_owned(),
        created_by: me.agent_id.clone(),
        created_at: now,
        expires_at,
        lifted_by: None,
        lifted_at: None,
    };
    chat.store.create_ban(ban.clone()).await?;
    announce(chat, &ban).await;
    if let Some(v) = &visitor {
        chat.bus
            .publish(Envelope {
                site_id: ban.site_id.clone(),
                audience: Audience::Visitor { visitor_id: v.id.clone() },
                event: None,
                payload: Payload::Disconnect { code: Error::Banned.code().into() },
            })
            .await;
        chat.end_visitor_chats(&ban.site_id, &v.id, Author::agent(&me.agent_id)).await?;
    }
    metrics::counter!("holdfast_bans_total").increment(1);
    Ok(ban)
}

/// Tell every node (this one included) of a ban made or lifted.
async fn announce(chat: &Chat, ban: &Ban) {
    chat.bans.apply(ban);
    chat.bus
        .publish(Envelope {
            site_id: ban.site_id.clone(),
            audience: Audience::SiteVisitors,
            event: None,
            payload: Payload::Ban { ban: ban.clone() },
        })
        .await;
}

/// The site's bans, newest first (an admin's list), after a page's cursor
/// `(created_at, id)`, at most `limit` (up to 1,001: a page and one more).
pub async fn list(chat: &Chat, me: &AgentCtx, after: Option<(i64, String)>, limit: i64) -> Result<Vec<Ban>> {
    admin_only(me)?;
    chat.store.bans(&me.site_id, after.unwrap_or((i64::MAX, String::new())), limit.clamp(1, 1001)).await
}

/// An admin lifts a ban of their site; lifting one already lifted changes
/// nothing. Another site's ban is "not found".
pub async fn lift(chat: &Chat, me: &AgentCtx, id: &str) -> Result<Ban> {
    admin_only(me)?;
    if id.len() > 64 {
        return Err(Error::NotFound("ban"));
    }
    let ban = chat.store.lift_ban(&me.site_id, id, &me.agent_id, now_ms()).await?.ok_or(Error::NotFound("ban"))?;
    announce(chat, &ban).await;
    Ok(ban)
}

fn admin_only(me: &AgentCtx) -> Result<()> {
    if me.role.is_admin() { Ok(()) } else { Err(Error::forbidden("admins only")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(id: &str, visitor: Option<&str>, cidr: Option<&str>, expires_at: Option<i64>) -> Ban {
        Ban {
            id: id.into(),
            site_id: "s".into(),
            visitor_id: visitor.map(Into::into),
            cidr: cidr.map(Into::into),
            reason: "spam".into(),
            created_by: "a".into(),
            created_at: 0,
            expires_at,
            lifted_by: None,
            lifted_at: None,
        }
    }

    #[test]
    fn a_ban_refuses_its_visitor_and_network_until_lifted_or_expired() {
        let bans = Bans::default();
        bans.apply(&ban("1", Some("v1"), Some("203.0.113.0/24"), None));
        bans.apply(&ban("2", Some("v2"), None, Some(now_ms() - 1)));
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(matches!(bans.check("s", Some("v1"), None), Err(Error::Banned)));
        assert!(matches!(bans.check("s", Some("v9"), ip("203.0.113.77")), Err(Error::Banned)));
        assert!(matches!(bans.check("s", None, ip("::ffff:203.0.113.1")), Err(Error::Banned)));
        assert!(bans.check("s", Some("v9"), ip("203.0.114.1")).is_ok());
        assert!(bans.check("s", Some("v2"), None).is_ok(), "expired");
        assert!(bans.check("other", Some("v1"), ip("203.0.113.77")).is_ok(), "another site's ban");
        let mut lifted = ban("1", Some("v1"), Some("203.0.113.0/24"), None);
        lifted.lifted_at = Some(now_ms());
        bans.apply(&lifted);
        assert!(bans.check("s", Some("v1"), ip("203.0.113.77")).is_ok());
    }

    #[test]
    fn networks_are_canonical_and_not_too_wide() {
        assert_eq!(parse_cidr("203.0.113.77/24").unwrap().to_string(), "203.0.113.0/24");
        assert_eq!(parse_cidr(" 203.0.113.77 ").unwrap().to_string(), "203.0.113.77/32");
        assert_eq!(parse_cidr("::ffff:203.0.113.77").unwrap().to_string(), "203.0.113.77/32");
        assert_eq!(parse_cidr("2001:db8::1/48").unwrap().to_string(), "2001:db8::/48");
        assert!(parse_cidr("0.0.0.0/0").is_err());
        assert!(parse_cidr("10.0.0.0/8").is_err());
        assert!(parse_cidr("2001::/16").is_err());
        assert!(parse_cidr("not an address").is_err());
    }
}

//! The audit log: every admin action — settings, the site's name, agents
//! created or changed (role, deactivation, a password set), groups, canned
//! responses, deliveries sent again, bans made and lifted, and the
//! operator's status page and sites — recorded with who, when, what and
//! the values before and after. Append-only in the store (triggers refuse
//! changes); admins read their site's (`GET /api/v1/admin/audit`).
//!
//! An entry is written after the action succeeded. If it cannot be written
//! the action stands (it is done), the failure is logged and counted
//! (`holdfast_audit_failures_total`): an operator sees the gap.

use serde_json::Value;

use crate::chat::service::AgentCtx;
use crate::error::Result;
use crate::store::audit::AuditEntry;
use crate::store::{Store, new_id, now_ms};

/// Keys whose values never enter the log (a password in a request body).
const SECRET_KEYS: &[&str] = &["password", "new_password", "current_password", "secret", "token"];

/// `value` with every secret-looking key's value replaced by `"(set)"`.
pub fn redacted(mut value: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, inner) in map.iter_mut() {
                    if SECRET_KEYS.contains(&k.as_str()) {
                        *inner = Value::String("(set)".into());
                    } else {
                        walk(inner);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// What happened, to be recorded.
pub struct Action<'a> {
    /// `settings.changed`, `agent.created`, `ban.lifted`…
    pub name: &'a str,
    pub target: Option<&'a str>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Record `action` by `who` in their site's log (see the module's note on
/// failures).
pub async fn record(store: &dyn Store, who: &AgentCtx, action: Action<'_>) {
    let outcome = async {
        let person = store.agent(&who.agent_id).await?.map(|a| a.name).unwrap_or_default();
        // An integration acts for the admin who made its token: both named.
        let actor_name = match &who.api_token {
            Some(token) => format!("{person} (API token \u{201c}{}\u{201d})", token.name),
            None => person,
        };
        let entry = AuditEntry {
            id: new_id(),
            site_id: who.site_id.clone(),
            at: now_ms(),
            actor_id: who.agent_id.clone(),
            actor_name,
            action: action.name.to_owned(),
            target: action.target.map(str::to_owned),
            before: action.before.map(redacted),
            after: action.after.map(redacted),
        };
        store.append_audit(entry).await
    }
    .await;
    if let Err(err) = outcome {
        metrics::counter!("holdfast_audit_failures_total").increment(1);
        tracing::error!(error = ?err, action = action.name, "cannot record an admin action in the audit log");
    }
}

/// The site's log, newest first; `before` (ms) pages back.
/// `after` is a cursor `(at, id)`: the entries after it in newest-first
/// order (`id` `""`: those older than `at`); `None`, from the newest.
pub async fn page(
    store: &dyn Store,
    admin: &AgentCtx,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<AuditEntry>> {
    if !admin.role.is_admin() {
        return Err(crate::error::Error::forbidden("admins only"));
    }
    store.audit_log(&admin.site_id, after.unwrap_or((i64::MAX, String::new())), limit.clamp(1, 500)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_enter_the_log() {
        let v = serde_json::json!({"name": "Site", "admin": {"email": "a@b.c", "password": "hunter2"},
            "list": [{"token": "t"}], "password": null});
        let r = redacted(v);
        assert_eq!(r["admin"]["password"], "(set)");
        assert_eq!(r["list"][0]["token"], "(set)");
        assert_eq!(r["admin"]["email"], "a@b.c");
        assert!(!r.to_string().contains("hunter2"));
    }
}

//! Invitations: how a site's admin adds a person. The admin names an email;
//! the address receives a link (through the outbox) to choose a password,
//! and accepting it makes the agent. The admin's answer is the same whether
//! or not the address has an account on another site — that is another
//! site's business (issue 16) — and so are the email's subject and the
//! delivery the admin sees: an address already in use receives a notice
//! instead of a link. An email is one account on one site; the operator
//! and the CLI, who see every site, still create accounts with a password.

use serde::Deserialize;

use super::{
    check_chat_limit, check_name, check_password, check_role, default_chat_limit, default_role, require_admin,
};
use crate::auth::{Auth, normalize_email, valid_email};
use crate::chat::service::AgentCtx;
use crate::error::{Error, Result};
use crate::outbox::Outbox;
use crate::outbox::mail::InvitationPayload;
use crate::store::invitations::Invitation;
use crate::store::outbox::{DeliveryKind, NewDelivery};
use crate::store::{Agent, Role, Store, new_id, now_ms};

/// How long an invitation's link works: a week, so a person away for a
/// few days still finds it working.
pub const INVITATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// The mail template of invitations (`assets/mail/invitation.*`).
pub const TEMPLATE: &str = "invitation";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    pub email: String,
    pub name: String,
    #[serde(default = "default_role")]
    pub role: Role,
    #[serde(default = "default_chat_limit")]
    pub chat_limit: i64,
}

/// Invite a person to the admin's site. Refused only for facts of this
/// site: an agent of it has the email, or an open invitation does.
pub async fn invite(store: &dyn Store, outbox: &Outbox, admin: &AgentCtx, req: InviteRequest) -> Result<Invitation> {
    require_admin(admin)?;
    if check_role(req.role, admin)? == Role::Operator {
        return Err(Error::bad_request("an invitation makes an admin or an agent"));
    }
    let email = normalize_email(&req.email);
    if !valid_email(&email) {
        return Err(Error::bad_request("email is not a valid address"));
    }
    let name = check_name(&req.name)?;
    let chat_limit = check_chat_limit(req.chat_limit)?;
    if !outbox.mail_enabled() {
        return Err(Error::conflict(
            "invitations are sent by email, and this installation has no mail relay (--smtp-host); \
             until it does, the operator adds people",
        ));
    }
    let site = store.site(&admin.site_id).await?.ok_or(Error::NotFound("site"))?;
    let inviter = store.agent(&admin.agent_id).await?.ok_or_else(|| Error::unauthorized("agent not found"))?;
    // Read here, shown only to the address's owner: whether it already has
    // an account (on another site: this site's agents are refused below).
    let account_exists = store.agent_by_email(&email).await?.is_some();
    let now = now_ms();
    let invitation = Invitation {
        id: new_id(),
        site_id: admin.site_id.clone(),
        email: email.clone(),
        name,
        role: req.role,
        chat_limit,
        invited_by: admin.agent_id.clone(),
        created_at: now,
        expires_at: now + INVITATION_TTL_MS,
        accepted_at: None,
        revoked_at: None,
    };
    let payload = InvitationPayload {
        invitation_id: invitation.id.clone(),
        site_name: site.name,
        invited_by: inviter.name,
        name: invitation.name.clone(),
        role: invitation.role,
        expires_at: invitation.expires_at,
        account_exists,
        at: now,
    };
    let delivery = NewDelivery {
        id: new_id(),
        site_id: Some(admin.site_id.clone()),
        kind: DeliveryKind::Email,
        template: TEMPLATE.into(),
        recipient: email,
        payload: serde_json::to_string(&payload).map_err(Error::internal)?,
        dedupe_key: format!("{TEMPLATE}:{}", invitation.id),
        created_at: now,
        give_up_at: now + outbox.config.retry_window.as_millis() as i64,
    };
    store.create_invitation(invitation.clone(), delivery).await?;
    outbox.queued();
    Ok(invitation)
}

/// The admin's site's open invitations (expired ones too, until revoked).
pub async fn open(store: &dyn Store, admin: &AgentCtx) -> Result<Vec<Invitation>> {
    require_admin(admin)?;
    store.open_invitations(&admin.site_id).await
}

/// Revoke an open invitation of the admin's site: its link stops working
/// (and its email, if not sent yet, is not sent).
pub async fn revoke(store: &dyn Store, admin: &AgentCtx, id: &str) -> Result<()> {
    require_admin(admin)?;
    if id.len() > 64 || !store.revoke_invitation(&admin.site_id, id, now_ms()).await? {
        return Err(Error::NotFound("invitation"));
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The token of the emailed link.
    pub token: String,
    pub password: String,
}

/// Accept an invitation with its link's token: the agent exists from now
/// on, with this password. Any token that is not an open invitation's is
/// "invitation not found".
pub async fn accept(auth: &Auth, store: &dyn Store, req: AcceptRequest) -> Result<Agent> {
    if req.token.len() > 1024 {
        return Err(Error::NotFound("invitation"));
    }
    let id = auth.tokens.verify_invitation(&req.token).ok_or(Error::NotFound("invitation"))?;
    check_password(&req.password)?;
    // Checked before the hash so a dead link costs none; the store checks
    // again in the transaction that makes the agent.
    let invitation = store.invitation(&id).await?.filter(|i| i.open_at(now_ms()));
    if invitation.is_none() {
        return Err(Error::NotFound("invitation"));
    }
    // The bounded pool: accepting competes fairly with logins.
    let hash = auth.hashes.hash(&req.password).await?;
    store.accept_invitation(&id, &hash, now_ms()).await
}

//! Signed tokens, verified in memory with no store read: the short-lived
//! agent access token and the long-lived visitor token. Refresh
//! credentials are opaque random secrets whose SHA-256 alone is stored.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::Role;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentClaims {
    /// Agent id.
    pub sub: String,
    pub site: String,
    /// Session id: revoking the session ends the token's sockets.
    pub sid: String,
    pub role: Role,
    /// Always "agent": a visitor token can never pass as an agent's.
    pub typ: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisitorClaims {
    /// Visitor id.
    pub sub: String,
    pub site: String,
    /// Always "visitor".
    pub typ: String,
    pub iat: u64,
    pub exp: u64,
}

/// A device that logged in to an account before: its failures are counted
/// apart from unknown devices' (`ratelimit`), so guesses from elsewhere
/// never lock the agent's own browser out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceClaims {
    /// The account's normalised email.
    pub sub: String,
    /// This device's id.
    pub jti: String,
    /// Always "device".
    pub typ: String,
    pub iat: u64,
    pub exp: u64,
}

/// An invitation's link: names the invitation, signed, so no secret of it
/// is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvitationClaims {
    /// The invitation's id.
    pub sub: String,
    /// Always "invitation".
    pub typ: String,
    pub iat: u64,
    pub exp: u64,
}

/// A download link of an attachment: names it, signed, short-lived, so an
/// `<img>` can load it without a credential of its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachmentClaims {
    /// The attachment's id.
    pub sub: String,
    /// Always "attachment".
    pub typ: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Tokens {
    /// `secret`: the server's signing key (shared by all nodes, kept in the store).
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    pub fn issue_agent(
        &self,
        agent_id: &str,
        site_id: &str,
        session_id: &str,
        role: Role,
        ttl_s: u64,
    ) -> Result<String> {
        let iat = now_s();
        let claims = AgentClaims {
            sub: agent_id.to_owned(),
            site: site_id.to_owned(),
            sid: session_id.to_owned(),
            role,
            typ: "agent".into(),
            iat,
            exp: iat + ttl_s,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(Error::internal)
    }

    pub fn issue_visitor(&self, visitor_id: &str, site_id: &str, ttl_s: u64) -> Result<String> {
        let iat = now_s();
        let claims = VisitorClaims {
            sub: visitor_id.to_owned(),
            site: site_id.to_owned(),
            typ: "visitor".into(),
            iat,
            exp: iat + ttl_s,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(Error::internal)
    }

    /// A device token for `account` (a normalised email), keeping `device_id`
    /// when the device already had one.
    pub fn issue_device(&self, account: &str, device_id: Option<&str>, ttl_s: u64) -> Result<String> {
        let iat = now_s();
        let jti = device_id.map(str::to_owned).unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
        let claims = DeviceClaims { sub: account.to_owned(), jti, typ: "device".into(), iat, exp: iat + ttl_s };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(Error::internal)
    }

    /// The device id of a valid device token issued for `account`, if it is one.
    pub fn verify_device(&self, token: &str, account: &str) -> Option<String> {
        let claims: DeviceClaims = self.decode(token).ok()?;
        (claims.typ == "device" && claims.sub == account).then_some(claims.jti)
    }

    /// The token of an invitation's link, valid until `expires_at_ms`.
    pub fn issue_invitation(&self, invitation_id: &str, expires_at_ms: i64) -> Result<String> {
        let claims = InvitationClaims {
            sub: invitation_id.to_owned(),
            typ: "invitation".into(),
            iat: now_s(),
            exp: (expires_at_ms / 1000).max(0) as u64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(Error::internal)
    }

    /// The invitation id of a valid invitation token, if it is one.
    pub fn verify_invitation(&self, token: &str) -> Option<String> {
        let claims: InvitationClaims = self.decode(token).ok()?;
        (claims.typ == "invitation").then_some(claims.sub)
    }

    /// The token of an attachment's download link, valid until `expires_at_ms`.
    pub fn issue_attachment(&self, attachment_id: &str, expires_at_ms: i64) -> Result<String> {
        let claims = AttachmentClaims {
            sub: attachment_id.to_owned(),
            typ: "attachment".into(),
            iat: now_s(),
            exp: (expires_at_ms / 1000).max(0) as u64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(Error::internal)
    }

    /// The attachment id of a valid, unexpired download token, if it is one.
    pub fn verify_attachment(&self, token: &str) -> Option<String> {
        let mut strict = self.validation.clone();
        strict.leeway = 0;
        if token.len() > 4096 {
            return None;
        }
        let claims = jsonwebtoken::decode::<AttachmentClaims>(token, &self.decoding, &strict).ok()?.claims;
        (claims.typ == "attachment").then_some(claims.sub)
    }

    pub fn verify_agent(&self, token: &str) -> Result<AgentClaims> {
        let claims: AgentClaims = self.decode(token)?;
        if claims.typ != "agent" {
            return Err(Error::unauthorized("not an agent token"));
        }
        Ok(claims)
    }

    /// The claims of a correctly signed agent token that expired less than
    /// `grace_s` ago (for lenient renewal); any other token is refused.
    pub fn verify_agent_expired(&self, token: &str, grace_s: u64) -> Result<AgentClaims> {
        let mut lenient = self.validation.clone();
        lenient.validate_exp = false;
        let claims = jsonwebtoken::decode::<AgentClaims>(token, &self.decoding, &lenient)
            .map(|d| d.claims)
            .map_err(|_| Error::unauthorized("invalid token"))?;
        if claims.typ != "agent" || claims.exp + grace_s < now_s() {
            return Err(Error::TokenExpired);
        }
        Ok(claims)
    }

    pub fn verify_visitor(&self, token: &str) -> Result<VisitorClaims> {
        let claims: VisitorClaims = self.decode(token)?;
        if claims.typ != "visitor" {
            return Err(Error::unauthorized("not a visitor token"));
        }
        Ok(claims)
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T> {
        if token.len() > 4096 {
            return Err(Error::unauthorized("invalid token"));
        }
        jsonwebtoken::decode::<T>(token, &self.decoding, &self.validation).map(|d| d.claims).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => Error::TokenExpired,
                _ => Error::unauthorized("invalid token"),
            }
        })
    }
}

/// A new refresh credential and the hash to store for it.
pub fn new_refresh_secret() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let secret = format!("hfr_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_secret(&secret);
    (secret, hash)
}

/// SHA-256 of a high-entropy secret: enough, and cheap, since it is not a
/// password (no salt or slow hash needed for 256 random bits).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_and_visitor_tokens_do_not_cross() {
        let t = Tokens::new(b"k");
        let a = t.issue_agent("a1", "s1", "sess", Role::Agent, 60).unwrap();
        let v = t.issue_visitor("v1", "s1", 60).unwrap();
        assert_eq!(t.verify_agent(&a).unwrap().sub, "a1");
        assert_eq!(t.verify_visitor(&v).unwrap().sub, "v1");
        assert!(t.verify_agent(&v).is_err());
        assert!(t.verify_visitor(&a).is_err());
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let a = Tokens::new(b"one").issue_agent("a", "s", "x", Role::Admin, 60).unwrap();
        assert!(Tokens::new(b"two").verify_agent(&a).is_err());
        assert!(Tokens::new(b"one").verify_agent("garbage").is_err());
    }

    #[test]
    fn a_device_token_vouches_for_its_own_account_only() {
        let t = Tokens::new(b"k");
        let d = t.issue_device("a@x.example", None, 60).unwrap();
        let id = t.verify_device(&d, "a@x.example").expect("valid for its account");
        assert!(t.verify_device(&d, "b@x.example").is_none());
        assert!(Tokens::new(b"other").verify_device(&d, "a@x.example").is_none());
        // An agent token is not a device token.
        let a = t.issue_agent("a1", "s1", "sess", Role::Agent, 60).unwrap();
        assert!(t.verify_device(&a, "a1").is_none());
        // Renewal keeps the device's id.
        let renewed = t.issue_device("a@x.example", Some(&id), 60).unwrap();
        assert_eq!(t.verify_device(&renewed, "a@x.example"), Some(id));
    }

    #[test]
    fn refresh_secrets_hash_stably() {
        let (secret, hash) = new_refresh_secret();
        assert!(secret.starts_with("hfr_"));
        assert_eq!(hash_secret(&secret), hash);
        assert_ne!(new_refresh_secret().0, secret);
    }
}

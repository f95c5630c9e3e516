//! TLS for Holdfast's outgoing connections: webhooks, HTTPS monitors and
//! SMTP of the status page, and the side services. Certificates are checked
//! against the system's roots (rustls with the platform verifier; no
//! OpenSSL), plus the CAs an operator adds with an extra PEM bundle for a
//! private CA. Nothing here accepts a certificate it cannot verify.
//!
//! One crypto provider, *ring* (which the NATS client needs anyway), serves
//! every TLS connection: `install_crypto_provider` makes it rustls's
//! process-wide default, which reqwest (built without a provider of its
//! own) and lettre then use.
//!
//! Why a TLS connection failed is said in words fit for the public status
//! page: which check the certificate failed, never an address or a name.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// CA certificates trusted in addition to the system's roots (an
/// operator's private CA), checked when loaded.
#[derive(Clone, Default)]
pub struct ExtraRoots(Arc<[CertificateDer<'static>]>);

impl std::fmt::Debug for ExtraRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtraRoots({} certificates)", self.0.len())
    }
}

impl ExtraRoots {
    /// Read a PEM bundle; every certificate in it becomes trusted. The error
    /// is one line naming the file.
    pub fn load(path: &Path) -> Result<ExtraRoots, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The certificates of a PEM bundle. Other sections (a private key) are
    /// skipped; a bundle without a certificate, or with one that cannot
    /// serve as a CA, is refused.
    pub fn from_pem(pem: &[u8]) -> Result<ExtraRoots, String> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not a PEM certificate bundle ({e})"))?;
        if certs.is_empty() {
            return Err("no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into());
        }
        let mut check = rustls::RootCertStore::empty();
        for (n, cert) in certs.iter().enumerate() {
            check.add(cert.clone()).map_err(|e| format!("certificate {} cannot be used as a CA: {e}", n + 1))?;
        }
        Ok(ExtraRoots(certs.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The certificates, DER-encoded.
    pub fn der(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(|c| c.as_ref())
    }

    fn for_reqwest(&self) -> Vec<reqwest::Certificate> {
        // Checked when loaded, so none is refused here.
        self.der().filter_map(|der| reqwest::Certificate::from_der(der).ok()).collect()
    }
}

/// Make *ring* the process's default rustls crypto provider. The binary
/// calls it at start and `http_client` before every client it builds, so a
/// test that builds `AppState` directly gets it too; a second call (or a
/// provider installed before) changes nothing.
pub fn install_crypto_provider() {
    // Err only when a default is already installed: that one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client (made by `builder`) that trusts the system's roots and
/// `extra`. On a host with no CA certificates at all (a bare container) the
/// system's verifier cannot start; the client then trusts `extra` alone, so
/// `http://` keeps working and `https://` fails with a clear reason, and it
/// says so in the log.
pub fn http_client(
    builder: impl Fn() -> reqwest::ClientBuilder,
    extra: &ExtraRoots,
) -> reqwest::Result<reqwest::Client> {
    install_crypto_provider();
    match builder().tls_certs_merge(extra.for_reqwest()).build() {
        Ok(client) => Ok(client),
        Err(e) => {
            let why = deepest_cause(&e).map_or_else(|| e.to_string(), |c| c.to_string());
            tracing::warn!(error = %why, "no system CA certificates: HTTPS trusts only the extra CA bundle, if any");
            builder().tls_certs_only(extra.for_reqwest()).build()
        }
    }
}

/// Why a request failed, in words fit for a public page: what went wrong
/// (TLS, a refused connection, a timeout), never the URL or an address.
pub fn request_failure(e: &reqwest::Error) -> String {
    if let Some(reason) = tls_failure(e) {
        return reason;
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    let cause = deepest_cause(e).map(|c| c.to_string());
    match (e.is_connect(), cause) {
        (true, Some(cause)) => format!("connect failed: {cause}"),
        (true, None) => "connect failed".into(),
        (false, Some(cause)) => format!("request failed: {cause}"),
        (false, None) if e.is_redirect() => "too many redirects".into(),
        (false, None) => "request failed".into(),
    }
}

/// `TLS: …` when `e` (or one of its causes) is a TLS failure: the
/// certificate check that failed, or the handshake.
pub fn tls_failure(e: &(dyn StdError + 'static)) -> Option<String> {
    find_tls_error(e).map(|tls| format!("TLS: {}", describe(tls)))
}

fn find_tls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An io::Error's `source()` skips the error it wraps; look inside.
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(tls) = find_tls_error(inner)
        {
            return Some(tls);
        }
        next = err.source();
    }
    None
}

fn describe(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "the certificate is not signed by a trusted authority",
            C::Expired | C::ExpiredContext { .. } => "the certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "the certificate is not valid yet",
            C::NotValidForName | C::NotValidForNameContext { .. } => "the certificate is for another host name",
            C::Revoked => "the certificate has been revoked",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "the certificate is not for a server",
            C::BadEncoding | C::BadSignature => "the certificate is malformed",
            _ => "the certificate was refused",
        },
        E::NoCertificatesPresented => "the server presented no certificate",
        E::PeerIncompatible(_) => "the server has no TLS version or cipher in common with us",
        E::AlertReceived(_) => "the server refused the handshake",
        _ => "the handshake failed",
    }
}

/// The innermost cause of `e` (looking inside io::Errors): the words of
/// the operating system or the peer, without the URL a request error adds.
fn deepest_cause<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    let mut deepest = None;
    let mut next = e.source();
    while let Some(err) = next {
        deepest = Some(err);
        next = err.source();
        if next.is_none()
            && let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
        {
            next = Some(inner);
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_needs_a_usable_certificate() {
        assert!(ExtraRoots::from_pem(b"").unwrap_err().contains("no certificate"));
        assert!(ExtraRoots::from_pem(b"hello").unwrap_err().contains("no certificate"));
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(ExtraRoots::from_pem(garbage).unwrap_err().contains("certificate 1 cannot be used as a CA"));
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(ExtraRoots::from_pem(broken).unwrap_err().contains("not a PEM"));
        assert!(ExtraRoots::default().is_empty());
    }

    #[test]
    fn tls_failures_are_found_inside_io_errors_and_named_without_detail() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("internal.example").unwrap().to_owned(),
            presented: vec!["other.example".into()],
        });
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let reason = tls_failure(&io).unwrap();
        assert_eq!(reason, "TLS: the certificate is for another host name");
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(tls_failure(&plain), None);
    }
}

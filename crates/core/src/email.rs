//! Email addresses as Holdfast takes them: agents' logins, leads' and
//! groups' addresses, status page subscribers.

/// Emails compare case-insensitively and without surrounding space.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A plausible email: something@something.tld, no spaces, at most 254 bytes.
pub fn valid_email(email: &str) -> bool {
    let email = email.trim();
    email.len() <= 254
        && !email.contains(char::is_whitespace)
        && email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
}

//! The client's address: the socket's peer, unless the peer is one of the
//! operator's trusted proxies (`--trusted-proxy CIDR`), in which case the
//! address that proxy forwarded in `X-Forwarded-For`. The header is read
//! from the right: each trusted proxy appends the address it received
//! from, so the first address from the right that is not a trusted proxy
//! is the client; anything left of it was written by the client and is
//! not believed. A header that does not parse is not believed either (the
//! last address before it that did, or the peer, is the client).

use std::net::{IpAddr, SocketAddr};

pub use ipnet::IpNet;

/// An IPv4 address written as IPv4-mapped IPv6 (`::ffff:192.0.2.1`, as a
/// dual-stack listener reports it) is that IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn trusted_by(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// A trusted proxy as the operator writes it (`--trusted-proxy`): a
/// network, or one address (a /32 or /128).
pub fn parse_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a network like 10.0.0.0/8"))
}

/// One entry of `X-Forwarded-For`: an address, or an address with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip())).map(canonical)
}

/// Who sent the request: `peer` unless it is a trusted proxy, then the
/// rightmost address in `forwarded_for` (every `X-Forwarded-For` value, in
/// order, joined by commas) that is not a trusted proxy.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted_by(trusted, peer) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    let mut client = peer;
    for entry in header.rsplit(',') {
        let Some(ip) = hop(entry) else { return client };
        client = ip;
        if !trusted_by(trusted, ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("198.51.100.7"), Some("203.0.113.9"), &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("10.1.2.3"), Some("203.0.113.9"), &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("10.1.2.3"), None, &trusted), ip("10.1.2.3"));
        assert_eq!(client_ip(ip("10.1.2.3"), Some("203.0.113.9"), &[]), ip("10.1.2.3"));
    }

    #[test]
    fn what_the_client_wrote_left_of_the_proxies_is_not_believed() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        // The client claims 1.1.1.1; the proxies appended the real address.
        let chain = "1.1.1.1, 203.0.113.9, 10.0.0.2";
        assert_eq!(client_ip(ip("10.0.0.1"), Some(chain), &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("10.0.0.1"), Some("[2001:db8::5]:443,10.0.0.2:80"), &trusted), ip("2001:db8::5"));
        // Only proxies: the leftmost of them.
        assert_eq!(client_ip(ip("10.0.0.1"), Some("10.0.0.3, 10.0.0.2"), &trusted), ip("10.0.0.3"));
        // Garbage stops the walk at the last address that parsed.
        assert_eq!(client_ip(ip("10.0.0.1"), Some("203.0.113.9, bogus"), &trusted), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("10.0.0.1"), Some("bogus, 10.0.0.2"), &trusted), ip("10.0.0.2"));
        // A mapped peer is its IPv4 address.
        assert_eq!(client_ip(ip("::ffff:10.0.0.1"), Some("203.0.113.9"), &trusted), ip("203.0.113.9"));
    }
}

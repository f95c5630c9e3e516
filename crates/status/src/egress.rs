//! Where the status page's outgoing connections may go. Webhook receivers
//! come from a public form and monitor targets from an operator; neither
//! may turn this server into a client of the machine itself or of its
//! private networks (metadata services, admin ports, a port scanner).
//!
//! The decision is made on the address a connection is actually made to:
//! [`PublicOnly`] is the resolver of the guarded HTTP clients, so a name is
//! resolved once and only its public addresses are ever connected to (a
//! DNS answer that changes between a check and the connect, "rebinding",
//! changes nothing). An address literal in a URL skips any resolver, so
//! [`check_url`] checks those before every request and every redirect;
//! [`tcp_connect`] does both for `tcp://` monitors. [`check_written_url`]
//! refuses what is plainly not public before a URL is even stored.
//!
//! "Public" means outside every IANA special-purpose range (IPv4 and IPv6
//! registries), multicast and the reserved 240/4; IPv6 forms that embed an
//! IPv4 address (mapped, NAT64, 6to4) are judged by that address, and the
//! deprecated IPv4-compatible form is refused outright. Guarded clients
//! use no proxy: through a proxy the proxy would pick the address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// What every refusal says: fit for the public page (no name, no address).
pub const NOT_PUBLIC: &str = "the address is not public";

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(segments: [u16; 8], len: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
}

/// IPv4 ranges never reached: the IANA IPv4 Special-Purpose Address
/// Registry (all of 192.0.0.0/24, though two of its hosts are global),
/// the deprecated 6to4 relay anycast, multicast and the reserved 240/4
/// with the broadcast address.
const SPECIAL_V4: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 8), "this network"),
    (v4(10, 0, 0, 0, 8), "private"),
    (v4(100, 64, 0, 0, 10), "shared address space (CGNAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local"),
    (v4(172, 16, 0, 0, 12), "private"),
    (v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    (v4(192, 0, 2, 0, 24), "documentation"),
    (v4(192, 88, 99, 0, 24), "6to4 relay anycast"),
    (v4(192, 168, 0, 0, 16), "private"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation"),
    (v4(203, 0, 113, 0, 24), "documentation"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
];

/// IPv6 global unicast: everything outside it (loopback, unspecified,
/// unique-local, link-local, site-local, multicast, discard-only, SRv6,
/// local-use NAT64…) is special, but for the embedding forms below.
const GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);
/// Special ranges inside global unicast (IANA IPv6 Special-Purpose Address
/// Registry); 2002::/16 (6to4) is judged by its embedded address instead.
const SPECIAL_V6: &[(Ipv6Net, &str)] = &[
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), "IETF protocol assignments (Teredo, benchmarking, ORCHID…)"),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
];
/// The well-known NAT64 prefix: the last 32 bits are an IPv4 address.
const NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
/// Deprecated IPv4-compatible addresses (`::a.b.c.d`, with `::` and `::1`).
const V4_COMPATIBLE: Ipv6Net = v6([0, 0, 0, 0, 0, 0, 0, 0], 96);
/// 6to4: bits 16–47 are an IPv4 address.
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

/// Why `ip` is not a public address (the range it is in), or `None` if it
/// is one.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => SPECIAL_V4.iter().find(|(net, _)| net.contains(&ip)).map(|(_, why)| *why),
        IpAddr::V6(ip) => special_v6(ip),
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return special_range(IpAddr::V4(v4));
    }
    let octets = ip.octets();
    if NAT64.contains(&ip) {
        return special_range(IpAddr::V4(Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15])));
    }
    if V4_COMPATIBLE.contains(&ip) {
        return Some("IPv4-compatible (deprecated), loopback or unspecified");
    }
    if SIX_TO_FOUR.contains(&ip) {
        return special_range(IpAddr::V4(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5])));
    }
    if !GLOBAL_UNICAST.contains(&ip) {
        return Some("not global unicast (loopback, unique-local, link-local, multicast…)");
    }
    SPECIAL_V6.iter().find(|(net, _)| net.contains(&ip)).map(|(_, why)| *why)
}

/// Whether a connection to `ip` is allowed without the operator's opt-out.
pub fn is_public(ip: IpAddr) -> bool {
    special_range(ip).is_none()
}

/// Names that are this machine by definition (RFC 6761).
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Check the host of `url` when connecting: an address literal (which no
/// resolver sees) must be public. A name is left to the resolver.
pub fn check_url(url: &Url) -> Result<(), &'static str> {
    // The parser has normalised an http(s) host (`0x7f.1` is 127.0.0.1);
    // a scheme the URL standard does not know (`tcp:`) keeps it as written.
    let host = url.host_str().ok_or("the URL has no host")?;
    match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) if !is_public(ip) => Err(NOT_PUBLIC),
        _ => Ok(()),
    }
}

/// Check the host of `url` as someone wrote it, before it is stored: as
/// [`check_url`], and `localhost` is refused by name, to say so at once.
/// Any other name is judged by its addresses at every connection.
pub fn check_written_url(url: &Url) -> Result<(), &'static str> {
    check_url(url)?;
    match url.host_str() {
        Some(host) if is_local_name(host) => Err(NOT_PUBLIC),
        _ => Ok(()),
    }
}

/// The public addresses of `host` (a name or a literal), with `port`.
/// Fails when it has none: no connection is then attempted at all.
pub async fn public_addrs(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let public: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.filter(|a| is_public(a.ip())).collect();
    if public.is_empty() {
        return Err(not_public());
    }
    Ok(public)
}

fn not_public() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, NOT_PUBLIC)
}

/// The resolver of guarded HTTP clients: a name's special addresses are
/// dropped, and a name with only special ones fails to resolve.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = public_addrs(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// `builder` reaching only public addresses: names through [`PublicOnly`],
/// no proxy. Requests must still pass [`check_url`] (literals skip the
/// resolver), redirects too (see [`redirects`]).
pub fn guard(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder.dns_resolver(PublicOnly).no_proxy()
}

/// Follow up to `limit` redirects, each to a URL that passes [`check_url`]
/// unless `allow_private`.
pub fn redirects(limit: usize, allow_private: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > limit {
            return attempt.error("too many redirects");
        }
        if !allow_private && let Err(why) = check_url(attempt.url()) {
            return attempt.error(why);
        }
        attempt.follow()
    })
}

/// A TCP connection to `host:port` (a name or a literal, IPv6 in brackets
/// or not), to a public address unless `allow_private`; the addresses are
/// tried in turn.
pub async fn tcp_connect(host: &str, port: u16, allow_private: bool) -> std::io::Result<tokio::net::TcpStream> {
    let addrs = if allow_private {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        tokio::net::lookup_host((host, port)).await?.collect()
    } else {
        public_addrs(host, port).await?
    };
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special(ip: &str) -> bool {
        !is_public(ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}")))
    }

    #[test]
    fn every_special_ipv4_range_is_refused_at_both_ends() {
        for ip in [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.0",
            "10.255.255.255",
            "100.64.0.0",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.0",
            "172.31.255.255",
            "192.0.0.0",
            "192.0.0.9",
            "192.0.0.255",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.0.1",
            "192.168.255.255",
            "198.18.0.0",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.7",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(special(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_ipv4_next_to_the_ranges_is_allowed() {
        for ip in [
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "203.0.114.0",
            "223.255.255.255",
            "93.184.216.34",
        ] {
            assert!(!special(ip), "{ip} is public");
        }
    }

    #[test]
    fn every_special_ipv6_range_is_refused() {
        for ip in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "100::1",
            "5f00::1",
            "64:ff9b:1::1",
            "2001::1",
            "2001:2::1",
            "2001:1ff:ffff::1",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff:ffff::1",
            "1::1",
            "4000::1",
        ] {
            assert!(special(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_are_judged_by_the_ipv4_address() {
        for ip in [
            // mapped
            "::ffff:127.0.0.1",
            "0:0:0:0:0:ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            // compatible (deprecated): refused whatever they embed
            "::127.0.0.1",
            "::8.8.8.8",
            // NAT64
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::192.168.1.1",
            // 6to4
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::1",
        ] {
            assert!(special(ip), "{ip} must be refused");
        }
        for ip in ["::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1", "2606:4700::1111", "2a00:1450::1"] {
            assert!(!special(ip), "{ip} is public");
        }
    }

    #[test]
    fn literal_hosts_in_urls_are_checked_as_written_and_normalised() {
        let check = |u: &str| check_written_url(&Url::parse(u).unwrap());
        for bad in [
            "http://127.0.0.1:9/",
            "http://[::ffff:127.0.0.1]:9/x",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
            "http://100.64.0.1/",
            "http://[::ffff:169.254.169.254]/latest",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://017700000001/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "tcp://127.0.0.1:5",
            "tcp://[::1]:5",
        ] {
            assert_eq!(check(bad), Err(NOT_PUBLIC), "{bad}");
        }
        for good in [
            "https://hooks.example.com/x",
            "http://93.184.216.34/",
            "http://[2606:4700::1111]/",
            "tcp://db.example.com:5432",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        // When connecting, a name is the resolver's to judge.
        assert_eq!(check_url(&Url::parse("http://localhost:9/").unwrap()), Ok(()));
        assert_eq!(check_url(&Url::parse("http://[::1]:9/").unwrap()), Err(NOT_PUBLIC));
    }

    #[tokio::test]
    async fn names_resolving_only_to_special_addresses_do_not_resolve() {
        for host in ["localhost", "127.0.0.1", "[::1]", "::ffff:127.0.0.1"] {
            let e = public_addrs(host, 80).await.expect_err(host);
            assert_eq!(e.to_string(), NOT_PUBLIC, "{host}: says nothing about the address");
        }
        assert_eq!(public_addrs("93.184.216.34", 80).await.unwrap(), vec!["93.184.216.34:80".parse().unwrap()]);
    }

    #[tokio::test]
    async fn a_tcp_connect_to_loopback_is_refused_before_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let e = tcp_connect("127.0.0.1", port, false).await.expect_err("refused");
        assert_eq!(e.to_string(), NOT_PUBLIC);
        assert!(tcp_connect("127.0.0.1", port, true).await.is_ok(), "the operator's opt-out still connects");
    }
}

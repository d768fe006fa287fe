//! The client IP of a request: the socket peer, unless the peer is a trusted
//! proxy, in which case the forwarding headers are walked from the nearest
//! hop outwards and the first hop that is not itself a trusted proxy is the
//! client (the usual rule: only hops we trust can have written what lies
//! beyond them).
//!
//! Only the header the trusted proxy writes is read (`EDGE_FORWARDED_HEADER`:
//! `X-Forwarded-For`, what HAProxy and nginx append, by default; or
//! `Forwarded`, RFC 7239): a client sending the other one cannot plant an
//! address, since the proxy passes it through untouched (issue #14: a
//! client's `Forwarded: for=` used to win over the proxy's
//! `X-Forwarded-For`, spoofing rate limits, countries and uniques).
//! Malformed, obfuscated (`_hidden`) or `unknown` hops stop the walk, and
//! the last trusted address seen is used.
//!
//! The rate limiter keys IPv6 clients by their /64 ([`rate_key`], from `common`).

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use ipnet::IpNet;

/// The forwarding header the trusted proxy writes, the only one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (HAProxy `option forwardfor`, nginx
    /// `$proxy_add_x_forwarded_for`).
    XForwardedFor,
    /// `Forwarded` (RFC 7239).
    Forwarded,
    /// None: the socket peer is the client (no proxy in front).
    None,
}

impl std::str::FromStr for ForwardedHeader {
    type Err = String;

    /// `x-forwarded-for`, `forwarded` or `none` (any case).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            "none" => Ok(ForwardedHeader::None),
            other => Err(format!("{other:?} is not x-forwarded-for, forwarded or none")),
        }
    }
}

/// Resolves the client IP of a request from `peer` and `headers`, believing
/// `header` only from `trusted` networks. IPv4-mapped IPv6 addresses are
/// reported as IPv4.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet], header: ForwardedHeader) -> IpAddr {
    let peer_ip = canonical(peer.ip());
    if !is_trusted(peer_ip, trusted) {
        return peer_ip;
    }
    let hops = forwarded_hops(headers, header);
    let mut client = peer_ip;
    // Nearest hop is last in the list.
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) => {
                client = *ip;
                if !is_trusted(*ip, trusted) {
                    return *ip;
                }
            }
            None => return client,
        }
    }
    client
}

pub use common::net::rate_key;

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The hops named by `header`, farthest first; `None` for a hop that is
/// not an IP address.
fn forwarded_hops(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    if header == ForwardedHeader::None {
        return Vec::new();
    }
    if header == ForwardedHeader::Forwarded {
        return headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| parse_node(v.trim()))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| parse_node(s.trim()))
        .collect()
}

/// Parses a node: `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim_matches('"');
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        return rest[..end].parse().ok().map(canonical);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    // IPv4 with a port.
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn trusted() -> Vec<IpNet> {
        vec!["127.0.0.0/8".parse().unwrap(), "10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(client_ip("203.0.113.9:5000".parse().unwrap(), &h, &trusted(), XFF), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peer_first_untrusted_hop_from_the_right() {
        let peer = "127.0.0.1:5000".parse().unwrap();
        // Spoofed leftmost entry, real client, then our own internal proxy.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 81.2.69.142, 10.1.2.3")]);
        assert_eq!(client_ip(peer, &h, &trusted(), XFF), ip("81.2.69.142"));
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "81.2.69.142")]);
        assert_eq!(client_ip(peer, &h, &trusted(), XFF), ip("81.2.69.142"));
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted(), XFF), ip("127.0.0.1"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let peer = "[::1]:5000".parse().unwrap();
        // Issue #14: the client sends `Forwarded`, the proxy appends the real
        // address to `X-Forwarded-For`; the client's claim is not read.
        let h = headers(&[("forwarded", "for=6.6.6.6"), ("x-forwarded-for", "81.2.69.142")]);
        assert_eq!(client_ip(peer, &h, &trusted(), XFF), ip("81.2.69.142"));
        assert_eq!(client_ip(peer, &h, &trusted(), ForwardedHeader::None), ip("::1"));
        // Behind a proxy writing RFC 7239, quoted v6 with a port parses.
        let h = headers(&[
            ("forwarded", r#"for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711""#),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        let rfc = ForwardedHeader::Forwarded;
        assert_eq!(client_ip(peer, &h, &trusted(), rfc), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "For=\"192.0.2.43:47011\"")]);
        assert_eq!(client_ip(peer, &h, &trusted(), rfc), ip("192.0.2.43"));
        assert_eq!("X-Forwarded-For".parse::<ForwardedHeader>(), Ok(XFF));
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }

    #[test]
    fn garbage_hops_stop_at_the_last_trusted_address() {
        let peer = "127.0.0.1:1".parse().unwrap();
        let h = headers(&[("forwarded", "for=_hidden, for=10.0.0.5")]);
        assert_eq!(client_ip(peer, &h, &trusted(), ForwardedHeader::Forwarded), ip("10.0.0.5"));
        let h = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_ip(peer, &h, &trusted(), XFF), ip("127.0.0.1"));
        let h = headers(&[("x-forwarded-for", "81.2.69.142:8080")]);
        assert_eq!(client_ip(peer, &h, &trusted(), XFF), ip("81.2.69.142"));
    }

    #[test]
    fn v4_mapped_peers_are_v4() {
        let peer: SocketAddr = "[::ffff:203.0.113.9]:80".parse().unwrap();
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted(), XFF), ip("203.0.113.9"));
    }
}

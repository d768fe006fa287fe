//! The client IP of a request: the socket peer, unless the peer is a trusted
//! proxy, in which case the forwarding headers are walked from the nearest
//! hop outwards and the first hop that is not itself a trusted proxy is the
//! client (the usual rule: only hops we trust can have written what lies
//! beyond them).
//!
//! `Forwarded` (RFC 7239) is preferred when present; otherwise
//! `X-Forwarded-For`. Malformed, obfuscated (`_hidden`) or `unknown` hops stop
//! the walk, and the last trusted address seen is used.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use ipnet::IpNet;

/// Resolves the client IP of a request from `peer` and `headers`, believing
/// forwarding headers only from `trusted` networks. IPv4-mapped IPv6
/// addresses are reported as IPv4.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer_ip = canonical(peer.ip());
    if !is_trusted(peer_ip, trusted) {
        return peer_ip;
    }
    let hops = forwarded_hops(headers);
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

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The hops named by the forwarding headers, farthest first; `None` for a
/// hop that is not an IP address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers.get_all("forwarded").iter().filter_map(|v| v.to_str().ok()).collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
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

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(client_ip("203.0.113.9:5000".parse().unwrap(), &h, &trusted()), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peer_first_untrusted_hop_from_the_right() {
        let peer = "127.0.0.1:5000".parse().unwrap();
        // Spoofed leftmost entry, real client, then our own internal proxy.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 81.2.69.142, 10.1.2.3")]);
        assert_eq!(client_ip(peer, &h, &trusted()), ip("81.2.69.142"));
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "81.2.69.142")]);
        assert_eq!(client_ip(peer, &h, &trusted()), ip("81.2.69.142"));
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted()), ip("127.0.0.1"));
    }

    #[test]
    fn rfc7239_forwarded_wins_and_parses_quoted_v6_with_port() {
        let peer = "[::1]:5000".parse().unwrap();
        let h = headers(&[
            ("forwarded", r#"for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711""#),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        assert_eq!(client_ip(peer, &h, &trusted()), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "For=\"192.0.2.43:47011\"")]);
        assert_eq!(client_ip(peer, &h, &trusted()), ip("192.0.2.43"));
    }

    #[test]
    fn garbage_hops_stop_at_the_last_trusted_address() {
        let peer = "127.0.0.1:1".parse().unwrap();
        let h = headers(&[("forwarded", "for=_hidden, for=10.0.0.5")]);
        assert_eq!(client_ip(peer, &h, &trusted()), ip("10.0.0.5"));
        let h = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_ip(peer, &h, &trusted()), ip("127.0.0.1"));
        let h = headers(&[("x-forwarded-for", "81.2.69.142:8080")]);
        assert_eq!(client_ip(peer, &h, &trusted()), ip("81.2.69.142"));
    }

    #[test]
    fn v4_mapped_peers_are_v4() {
        let peer: SocketAddr = "[::ffff:203.0.113.9]:80".parse().unwrap();
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted()), ip("203.0.113.9"));
    }
}

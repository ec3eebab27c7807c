//! What a limit counts by: the bucket key of a request.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::LimitKey;
use crate::exchange::Exchange;

/// The key of one bucket of a limit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BucketKey {
    /// Requests without a value for the key (a missing header or claim, an
    /// unreadable `X-Forwarded-For`) share one bucket: they are throttled
    /// together, never let through.
    Anonymous,
    /// A client address; IPv6 clients by their /64, the smallest block one
    /// subscriber is given, so rotating addresses inside it gains nothing.
    Ip(IpAddr),
    /// A header value or claim of at most [`INLINE_TEXT`] bytes.
    Text(Box<[u8]>),
    /// A longer value, by its SHA-256 (a key never holds more than this).
    Digest([u8; 32]),
}

/// Values up to this size are kept as they are.
pub const INLINE_TEXT: usize = 64;

impl BucketKey {
    /// A cheap spread of the key over a store's shards. Not a defence
    /// against chosen keys (the shard's map hashes with a random key for
    /// that); a client that picks keys for one shard only contends there.
    pub fn spread(&self) -> usize {
        let mix = |x: u64| (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
        match self {
            BucketKey::Anonymous => 0,
            BucketKey::Ip(IpAddr::V4(v4)) => mix(u64::from(u32::from(*v4))),
            BucketKey::Ip(IpAddr::V6(v6)) => mix((u128::from(*v6) >> 64) as u64),
            BucketKey::Text(t) => {
                let tail = &t[t.len().saturating_sub(8)..];
                let mut buf = [0u8; 8];
                buf[..tail.len()].copy_from_slice(tail);
                mix(u64::from_le_bytes(buf) ^ t.len() as u64)
            }
            BucketKey::Digest(d) => mix(u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))),
        }
    }

    fn text(value: &[u8]) -> BucketKey {
        if value.len() <= INLINE_TEXT {
            BucketKey::Text(value.into())
        } else {
            BucketKey::Digest(Sha256::digest(value).into())
        }
    }

    fn ip(ip: IpAddr) -> BucketKey {
        match ip {
            IpAddr::V4(_) => BucketKey::Ip(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => BucketKey::Ip(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    BucketKey::Ip(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }

    /// The bucket `ex` falls in for a limit keyed by `key`.
    pub fn of(key: &LimitKey, ex: &Exchange, trusted: &[ipnet::IpNet]) -> BucketKey {
        match key {
            LimitKey::Route => BucketKey::Anonymous,
            LimitKey::ClientIp => client_ip(ex.conn.peer.ip(), ex.request.headers(), trusted)
                .map_or(BucketKey::Anonymous, BucketKey::ip),
            LimitKey::Header(name) => match ex.request.headers().get(name.as_str()) {
                Some(v) if !v.is_empty() => BucketKey::text(v.as_bytes()),
                _ => BucketKey::Anonymous,
            },
            LimitKey::Jwt(claim) => {
                ex.claim_text(claim).map_or(BucketKey::Anonymous, |c| BucketKey::text(c.as_bytes()))
            }
        }
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy;
/// then the right-most address in `X-Forwarded-For` that is not a trusted
/// proxy (each proxy appends the address it received from, so only that
/// part of the header is vouched for). `None` when the header cannot be
/// read there.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut nearest = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let text = value.to_str().ok()?;
        for part in text.rsplit(',') {
            let ip = parse_hop(part.trim())?;
            if !is_trusted(&ip) {
                return Some(ip);
            }
            nearest = ip;
        }
    }
    // Every hop is a trusted proxy: the first of them is the client.
    Some(nearest)
}

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` element: an address, possibly with a port.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<SocketAddr>().ok().map(|a| canonical(a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let got = client_ip(peer, &xff(&["1.2.3.4"]), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, Some(peer));
        assert_eq!(client_ip(peer, &xff(&["1.2.3.4"]), &[]), Some(peer));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged the first element; the proxy appended the rest.
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(client_ip(peer, &h, &trusted), "198.51.100.7".parse().ok());
        assert_eq!(client_ip(peer, &xff(&["[2001:db8::1]:443"]), &trusted), "2001:db8::1".parse().ok());
        assert_eq!(client_ip(peer, &xff(&["10.9.9.9"]), &trusted), "10.9.9.9".parse().ok());
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), Some(peer));
        assert_eq!(client_ip(peer, &xff(&["1.2.3.4, junk"]), &trusted), None);
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_v4_is_v4() {
        let a = BucketKey::ip("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = BucketKey::ip("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = BucketKey::ip("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            BucketKey::ip("::ffff:192.0.2.1".parse().unwrap()),
            BucketKey::Ip("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn long_values_are_kept_as_digests() {
        assert!(matches!(BucketKey::text(&[b'a'; 64]), BucketKey::Text(_)));
        let long = vec![b'a'; 10_000];
        assert!(matches!(BucketKey::text(&long), BucketKey::Digest(_)));
        assert_ne!(BucketKey::text(&long), BucketKey::text(&long[1..]));
    }
}

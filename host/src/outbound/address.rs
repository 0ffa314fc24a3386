//! Which addresses outbound requests may reach: the pure part of the
//! outbound layer. An address is refused when it is not a public unicast
//! one (loopback, private, carrier-grade NAT, link-local with the cloud
//! metadata addresses, unique-local, multicast, unspecified, reserved,
//! documentation and benchmarking ranges), unless it lies in a network the
//! operator allowed (`outbound-allow-networks`). An IPv6 address that
//! carries an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64, 6to4) is
//! judged by the IPv4 address it carries as well, so `::ffff:127.0.0.1`
//! is loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why an address is refused: the kind of network it belongs to, for
/// messages (`127.0.0.1 is a loopback address`).
pub type Class = &'static str;

/// The IPv4 networks no request may reach unless allowed, with their
/// class. Checked in order; the first match names the class.
const V4: &[(Ipv4Addr, u8, Class)] = &[
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        "an unspecified (\"this network\") address",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "a loopback address"),
    (
        Ipv4Addr::new(10, 0, 0, 0),
        8,
        "a private address (RFC 1918)",
    ),
    (
        Ipv4Addr::new(172, 16, 0, 0),
        12,
        "a private address (RFC 1918)",
    ),
    (
        Ipv4Addr::new(192, 168, 0, 0),
        16,
        "a private address (RFC 1918)",
    ),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "a carrier-grade NAT address (RFC 6598)",
    ),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "a link-local address (where cloud metadata services listen)",
    ),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "an IETF protocol address"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "a documentation address"),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "a documentation address",
    ),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "a documentation address"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "a benchmarking address"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "a multicast address"),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        "a reserved or broadcast address",
    ),
];

/// The IPv6 networks refused outright. Addresses that carry an IPv4 one
/// are handled before these (see [`embedded_v4`]).
const V6: &[(Ipv6Addr, u8, Class)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "the unspecified address"),
    (Ipv6Addr::LOCALHOST, 128, "a loopback address"),
    (
        Ipv6Addr::new(0x0100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "a discard-only address",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        "a Teredo tunnel address",
    ),
    (
        Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0),
        32,
        "a documentation address",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "a unique-local address",
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        "a link-local address",
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "a site-local address",
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        "a multicast address",
    ),
];

/// The IPv4 address an IPv6 one carries, if it is of a kind that reaches
/// IPv4 hosts: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, deprecated but still routed by some stacks), NAT64
/// (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::`).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // `::` and `::1` are IPv6's own, judged below.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// The class that makes `ip` refused, or `None` when it may be reached.
/// Any network in `allowed` that holds the address (or the IPv4 address
/// it carries) makes it reachable.
pub fn refused(ip: IpAddr, allowed: &[IpNet]) -> Option<Class> {
    let embedded = match ip {
        IpAddr::V6(v6) => embedded_v4(v6),
        IpAddr::V4(_) => None,
    };
    let is_allowed = |a: IpAddr| allowed.iter().any(|net| net.contains(&a));
    if is_allowed(ip) || embedded.is_some_and(|v4| is_allowed(IpAddr::V4(v4))) {
        return None;
    }
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => match embedded {
            Some(v4) => refused_v4(v4),
            None => V6
                .iter()
                .find(|(net, len, _)| in_v6(v6, *net, *len))
                .map(|(_, _, class)| *class),
        },
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<Class> {
    V4.iter()
        .find(|(net, len, _)| Ipv4Net::new(*net, *len).is_ok_and(|n| n.contains(&ip)))
        .map(|(_, _, class)| *class)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    Ipv6Net::new(net, len).is_ok_and(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> Option<Class> {
        refused(ip.parse().unwrap(), &[])
    }

    #[test]
    fn public_unicast_addresses_are_reachable() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn every_internal_range_is_refused_with_its_class() {
        for (ip, want) in [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("10.0.0.1", "RFC 1918"),
            ("172.16.0.1", "RFC 1918"),
            ("172.31.255.255", "RFC 1918"),
            ("192.168.1.1", "RFC 1918"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("169.254.169.254", "metadata"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("198.18.0.1", "benchmarking"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique-local"),
            ("fc00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "RFC 1918"),
            ("::ffff:169.254.169.254", "metadata"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::7f00:1", "loopback"),
            ("2002:7f00:1::", "loopback"),
            ("2002:a9fe:a9fe::1", "metadata"),
            ("2001:db8::1", "documentation"),
        ] {
            let got = class(ip).unwrap_or_else(|| panic!("{ip} was not refused"));
            assert!(got.contains(want), "{ip}: {got}");
        }
    }

    #[test]
    fn allowed_networks_open_exactly_their_addresses() {
        let allowed: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        for ip in ["127.0.0.1", "127.1.2.3", "::ffff:127.0.0.1", "fd12::1"] {
            assert_eq!(refused(ip.parse().unwrap(), &allowed), None, "{ip}");
        }
        for ip in ["10.0.0.1", "::1", "169.254.169.254", "fe80::1"] {
            assert!(refused(ip.parse().unwrap(), &allowed).is_some(), "{ip}");
        }
    }
}

//! Where webhooks may go: server-side request forgery is refused. A destination address that is
//! loopback, private, link-local (cloud metadata at 169.254.169.254 and fd00:ec2::254 among them),
//! shared (CGNAT), unspecified, multicast, broadcast, documentation or reserved is not a partner's
//! server, unless the operator allows its network explicitly. The URL is checked when registered
//! and every address is checked again when the dispatcher connects (a DNS name may change what it
//! resolves to); redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The networks an operator allows although they are not public (e.g. `127.0.0.0/8` for a local
/// receiver), and whether plain `http://` is accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub allowed: Vec<IpNet>,
    pub allow_http: bool,
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("must be an absolute https URL with a host")]
    NotHttps,
    #[error("must not carry user info (`user@` before the host)")]
    UserInfo,
    #[error("{0} is {1}, not a public address (the operator may allow its network)")]
    Address(IpAddr, &'static str),
    #[error("the host {0} has no address")]
    NoAddress(String),
}

impl Policy {
    /// Parses a comma-separated list of networks (`127.0.0.0/8,::1/128`); empty: none.
    pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{s}` is not a network (e.g. 127.0.0.0/8) or an address"))
            })
            .collect()
    }

    /// Checks one address the destination resolves to.
    pub fn check_address(&self, address: IpAddr) -> Result<(), Refused> {
        let address = canonical(address);
        if self.allowed.iter().any(|net| net.contains(&address)) {
            return Ok(());
        }
        match special(address) {
            Some(what) => Err(Refused::Address(address, what)),
            None => Ok(()),
        }
    }

    /// Checks every address a host resolved to: one refused address refuses the host (an
    /// attacker's DNS name may answer a public and a private address).
    pub fn check_addresses(&self, host: &str, addresses: &[IpAddr]) -> Result<(), Refused> {
        if addresses.is_empty() {
            return Err(Refused::NoAddress(host.to_owned()));
        }
        addresses.iter().try_for_each(|a| self.check_address(*a))
    }

    /// Checks a URL's form: https (or http if allowed), no user info; returns its host (an IP
    /// literal's address in brackets stripped) and port.
    pub fn check_url(&self, url: &url::Url) -> Result<(Host, u16), Refused> {
        let https = url.scheme() == "https";
        if !(https || (self.allow_http && url.scheme() == "http")) {
            return Err(Refused::NotHttps);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::UserInfo);
        }
        let port = url.port_or_known_default().ok_or(Refused::NotHttps)?;
        let host = match url.host() {
            Some(url::Host::Ipv4(a)) => Host::Address(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Host::Address(IpAddr::V6(a)),
            Some(url::Host::Domain(d)) => Host::Name(d.to_owned()),
            None => return Err(Refused::NotHttps),
        };
        if let Host::Address(a) = host {
            self.check_address(a)?;
        }
        Ok((host, port))
    }
}

/// A URL's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Address(IpAddr),
    Name(String),
}

/// An IPv4-mapped or -compatible IPv6 address is checked as its IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// What a non-public address is; `None` for a public one.
fn special(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(a) => special_v4(a),
        IpAddr::V6(a) => special_v6(a),
    }
}

fn special_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [o1, o2, o3, _] = a.octets();
    Some(if a.is_loopback() {
        "loopback"
    } else if a.is_private() {
        "private"
    } else if a.is_link_local() {
        "link-local (cloud metadata lives there)"
    } else if a.is_unspecified() || o1 == 0 {
        "unspecified (\"this network\")"
    } else if a.is_broadcast() {
        "broadcast"
    } else if a.is_multicast() {
        "multicast"
    } else if o1 == 100 && (64..128).contains(&o2) {
        "shared address space (carrier-grade NAT)"
    } else if a.is_documentation() {
        "reserved for documentation"
    } else if o1 == 198 && (o2 == 18 || o2 == 19) {
        "reserved for benchmarking"
    } else if o1 == 192 && o2 == 0 && o3 == 0 {
        "reserved for protocol assignments"
    } else if o1 >= 240 {
        "reserved"
    } else {
        return None;
    })
}

fn special_v6(a: Ipv6Addr) -> Option<&'static str> {
    let first = a.segments()[0];
    Some(if a.is_loopback() {
        "loopback"
    } else if a.is_unspecified() {
        "unspecified"
    } else if a.is_multicast() {
        "multicast"
    } else if first & 0xfe00 == 0xfc00 {
        "private (unique local; cloud metadata lives there)"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if first == 0x2001 && a.segments()[1] == 0x0db8 {
        "reserved for documentation"
    } else if first == 0x0064 && a.segments()[1] == 0xff9b {
        // NAT64 embeds an IPv4 address; checking the embedded one would be the alternative
        "NAT64 (may reach an IPv4 private address)"
    } else if first == 0x2002 {
        "6to4 (may reach an IPv4 private address)"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(address: &str) -> bool {
        Policy::default()
            .check_address(address.parse().unwrap())
            .is_err()
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2002:7f00:1::",
        ] {
            assert!(refused(a), "{a} should be refused");
        }
        for a in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!refused(a), "{a} is public");
        }
    }

    #[test]
    fn an_allowed_network_is_accepted() {
        let policy = Policy {
            allowed: Policy::parse_networks("127.0.0.0/8, ::1").unwrap(),
            allow_http: true,
        };
        assert!(policy.check_address("127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.check_address("::1".parse().unwrap()).is_ok());
        assert!(policy.check_address("10.0.0.1".parse().unwrap()).is_err());
        assert!(Policy::parse_networks("nope").is_err());
    }

    #[test]
    fn urls_must_be_https_without_user_info_and_literal_addresses_are_checked() {
        let policy = Policy::default();
        let check = |u: &str| policy.check_url(&url::Url::parse(u).unwrap());
        assert_eq!(
            check("https://hooks.example.com/x"),
            Ok((Host::Name("hooks.example.com".into()), 443))
        );
        assert_eq!(check("http://hooks.example.com/x"), Err(Refused::NotHttps));
        assert_eq!(
            check("https://u:p@hooks.example.com/"),
            Err(Refused::UserInfo)
        );
        assert!(matches!(
            check("https://127.0.0.1/"),
            Err(Refused::Address(..))
        ));
        assert!(matches!(
            check("https://[::1]:8443/"),
            Err(Refused::Address(..))
        ));
        // decimal and hex spellings of loopback are parsed as the address they are
        assert!(matches!(
            check("https://2130706433/"),
            Err(Refused::Address(..))
        ));
        assert!(matches!(
            check("https://0x7f.1/"),
            Err(Refused::Address(..))
        ));
        assert!(policy.check_addresses("h", &[]).is_err());
        assert!(
            policy
                .check_addresses(
                    "h",
                    &["1.1.1.1".parse().unwrap(), "10.0.0.1".parse().unwrap()]
                )
                .is_err()
        );
    }
}

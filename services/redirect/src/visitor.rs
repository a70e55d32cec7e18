//! Who clicked, as far as the edge may know it: the client's address (the peer's, or the one a
//! trusted proxy forwarded), kept only as a salted hash; whether it is a bot; the user agent and
//! referrer, truncated. No I/O.

use std::net::IpAddr;

use ipnet::IpNet;
use sha2::{Digest as _, Sha256};

/// Longest user agent kept, in characters.
pub const MAX_USER_AGENT: usize = 256;
/// Longest referrer kept, in characters.
pub const MAX_REFERRER: usize = 512;

/// Crawlers, link previewers, monitors and HTTP libraries, by a lower-case piece of their user
/// agent. Anchored on Dub's `detect-bot.ts` and Keitaro's bot rules: what fetches a link without
/// a person behind it.
const BOT_SIGNATURES: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "facebookexternalhit",
    "facebookcatalog",
    "embedly",
    "quora link preview",
    "outbrain",
    "pinterest",
    "vkshare",
    "w3c_validator",
    "whatsapp",
    "telegram",
    "skypeuripreview",
    "bitlybot",
    "preview",
    "headlesschrome",
    "phantomjs",
    "selenium",
    "puppeteer",
    "playwright",
    "lighthouse",
    "pagespeed",
    "gtmetrix",
    "pingdom",
    "uptime",
    "monitor",
    "scrapy",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "go-http-client",
    "java/",
    "okhttp",
    "apache-httpclient",
    "libwww",
    "node-fetch",
    "axios/",
    "undici",
    "httpclient",
    "postmanruntime",
    "insomnia",
];

/// Why a click is a bot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bot {
    HeadRequest,
    NoUserAgent,
    UserAgent,
    Network,
}

impl Bot {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeadRequest => "head request",
            Self::NoUserAgent => "no user agent",
            Self::UserAgent => "user agent",
            Self::Network => "network",
        }
    }
}

/// The bot rules in order: a HEAD request, no user agent, a known signature, a listed network.
pub fn bot(head: bool, user_agent: &str, ip: IpAddr, networks: &[IpNet]) -> Option<Bot> {
    if head {
        return Some(Bot::HeadRequest);
    }
    if user_agent.trim().is_empty() {
        return Some(Bot::NoUserAgent);
    }
    let lower = user_agent.to_ascii_lowercase();
    if BOT_SIGNATURES.iter().any(|s| lower.contains(s)) {
        return Some(Bot::UserAgent);
    }
    if networks.iter().any(|n| n.contains(&ip)) {
        return Some(Bot::Network);
    }
    None
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy (the left part of
/// that header is whatever the client wrote, so it is never believed).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut last = peer;
    for hop in header.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            return last;
        };
        last = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    last
}

/// Hex of the first 16 bytes of SHA-256(salt ‖ address): the same visitor gives the same hash
/// under one salt, and the address cannot be read back from it without the salt.
pub fn ip_hash(salt: &[u8], ip: IpAddr) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(ip.to_string().as_bytes());
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// `value` cut to `max` characters, control characters dropped.
pub fn truncate(value: &str, max: usize) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn bots_by_method_agent_and_network() {
        let nets: Vec<IpNet> = vec!["66.249.64.0/19".parse().unwrap_or_default()];
        let browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
        assert_eq!(bot(false, browser, ip("203.0.113.9"), &nets), None);
        assert_eq!(
            bot(true, browser, ip("203.0.113.9"), &nets),
            Some(Bot::HeadRequest)
        );
        assert_eq!(
            bot(false, "  ", ip("203.0.113.9"), &nets),
            Some(Bot::NoUserAgent)
        );
        for agent in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "facebookexternalhit/1.1",
            "curl/8.5.0",
            "python-requests/2.32",
            "Mozilla/5.0 HeadlessChrome/120.0",
            "WhatsApp/2.23",
        ] {
            assert_eq!(
                bot(false, agent, ip("203.0.113.9"), &nets),
                Some(Bot::UserAgent),
                "{agent}"
            );
        }
        assert_eq!(
            bot(false, browser, ip("66.249.66.1"), &nets),
            Some(Bot::Network)
        );
    }

    #[test]
    fn only_a_trusted_proxy_is_believed_about_the_client() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap_or_default()];
        // an untrusted peer's header is ignored
        assert_eq!(
            client_ip(ip("198.51.100.7"), Some("1.2.3.4"), &trusted),
            ip("198.51.100.7")
        );
        // through the proxy: the right-most untrusted hop, not what the client wrote on the left
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                Some("6.6.6.6, 203.0.113.9, 127.0.0.2"),
                &trusted
            ),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip("127.0.0.1"), None, &trusted), ip("127.0.0.1"));
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("garbage"), &trusted),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn hashes_are_salted_and_stable() {
        let a = ip_hash(b"salt-one-0123456", ip("203.0.113.9"));
        assert_eq!(a.len(), 32);
        assert_eq!(a, ip_hash(b"salt-one-0123456", ip("203.0.113.9")));
        assert_ne!(a, ip_hash(b"salt-two-0123456", ip("203.0.113.9")));
        assert_ne!(a, ip_hash(b"salt-one-0123456", ip("203.0.113.10")));
        assert!(!a.contains("203"));
    }

    #[test]
    fn truncation_counts_characters_and_drops_controls() {
        assert_eq!(truncate("ab\u{7}cé", 3), "abc");
        assert_eq!(
            truncate(&"x".repeat(300), MAX_USER_AGENT).len(),
            MAX_USER_AGENT
        );
    }
}

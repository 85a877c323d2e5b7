//! The SSRF guard of outbound webhooks: a subscription's URL may not reach the deployment's own
//! network. Refused: loopback, private (RFC 1918, IPv6 unique local RFC 4193), link-local
//! (169.254.0.0/16, where cloud metadata services answer, and fe80::/10), carrier-grade NAT
//! (RFC 6598), unspecified, broadcast, multicast, documentation and other reserved ranges
//! (IANA special-purpose registries, RFC 6890), and IPv4-mapped or NAT64 forms of those.
//!
//! The URL is checked when a subscription is created, and every delivery resolves its host through
//! [`GuardedResolver`], which drops refused addresses: a name that later resolves to a private
//! address (DNS rebinding) is not reached either. Redirects are not followed.
//! `WEBHOOK_ALLOW_PRIVATE=1` turns the guard off (a private deployment, the tests).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the URL must be http:// or https:// with a host")]
    NotHttp,
    #[error("the URL's host {0} is a private, loopback or reserved address")]
    Private(String),
    #[error("the URL's host {0} does not resolve")]
    Unresolved(String),
}

/// How long checking a subscription's host name may take.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

const V4_REFUSED: [&str; 16] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
];

const V6_REFUSED: [&str; 12] = [
    "::/96",
    "::1/128",
    "::ffff:0:0:0/96",
    "64:ff9b:1::/48",
    "2001::/32",
    "2002::/16",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

fn refused_v4(ip: Ipv4Addr) -> bool {
    V4_REFUSED
        .iter()
        .filter_map(|net| net.parse::<Ipv4Net>().ok())
        .any(|net| net.contains(&ip))
}

/// Whether outbound webhooks may not reach `ip` (see the module documentation).
pub fn is_refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_v4(v4);
            }
            let nat64: Ipv6Net = "64:ff9b::/96".parse().unwrap_or_else(|_| unreachable!());
            if nat64.contains(&v6) {
                let [.., a, b, c, d] = v6.octets();
                return refused_v4(Ipv4Addr::new(a, b, c, d));
            }
            V6_REFUSED
                .iter()
                .filter_map(|net| net.parse::<Ipv6Net>().ok())
                .any(|net| net.contains(&v6))
        }
    }
}

/// Checks `url` (an http(s) URL): its host, a literal address or every address its name resolves
/// to now, must not be refused. With `allow_private` only the scheme and host are checked.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), Refused> {
    let parsed = reqwest::Url::parse(url).map_err(|_| Refused::NotHttp)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Refused::NotHttp);
    }
    let host = parsed.host().ok_or(Refused::NotHttp)?;
    if allow_private {
        return Ok(());
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    match host {
        url::Host::Ipv4(v4) if is_refused(IpAddr::V4(v4)) => Err(Refused::Private(v4.to_string())),
        url::Host::Ipv6(v6) if is_refused(IpAddr::V6(v6)) => Err(Refused::Private(v6.to_string())),
        url::Host::Ipv4(_) | url::Host::Ipv6(_) => Ok(()),
        url::Host::Domain(name) => {
            let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, port)));
            let addrs: Vec<SocketAddr> = match lookup.await {
                Ok(Ok(addrs)) => addrs.collect(),
                _ => return Err(Refused::Unresolved(name.to_owned())),
            };
            if addrs.is_empty() {
                return Err(Refused::Unresolved(name.to_owned()));
            }
            match addrs.iter().find(|a| is_refused(a.ip())) {
                Some(refused) => Err(Refused::Private(format!("{name} ({})", refused.ip()))),
                None => Ok(()),
            }
        }
    }
}

/// Resolves names with the system resolver and drops refused addresses, so that a delivery never
/// connects to one (a name rebound to a private address after the subscription was checked).
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_refused(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(Refused::Private(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether `url`'s host is a literal address the guard refuses (names are guarded at resolution by
/// [`GuardedResolver`]; literal addresses never reach a resolver).
pub fn literal_refused(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(v4)) => is_refused(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => is_refused(IpAddr::V6(v6)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_reserved_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
            "::127.0.0.1",
        ] {
            assert!(is_refused(ip.parse().unwrap()), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_refused(ip.parse().unwrap()), "{ip} must be allowed");
        }
    }

    #[tokio::test]
    async fn urls_to_metadata_and_loopback_are_refused_unless_allowed() {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://localhost/hook",
            "http://2130706433/",
        ] {
            assert!(
                matches!(check_url(url, false).await, Err(Refused::Private(_))),
                "{url} must be refused"
            );
            assert_eq!(check_url(url, true).await, Ok(()), "{url} is allowed with the override");
        }
        assert_eq!(check_url("ftp://example.com/", true).await, Err(Refused::NotHttp));
        assert_eq!(check_url("https://93.184.216.34/hook", false).await, Ok(()));
    }
}

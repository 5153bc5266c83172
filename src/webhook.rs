//! Webhooks: the callback URL policy and the `Mediafleet-Signature` header.
//!
//! A webhook is the only request the fleet makes to an address a client chose, so it is fenced in:
//! - `http` or `https` only, no user-info, default or explicit port;
//! - the host must match the configured allow-list (exact names, or `*.example.com` for sub-domains);
//! - every address the name resolves to must be public: loopback, private, link-local, CGNAT, multicast,
//!   documentation and unspecified ranges are refused unless explicitly allowed;
//! - the request goes to the address that was checked (the resolver's answer is pinned), so a DNS answer
//!   that changes between check and connect (rebinding) cannot redirect it; redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longest callback URL accepted (the URL is stored per media and sent with every announcement).
pub const CALLBACK_URL_MAX: usize = 2048;

/// Why a callback URL is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WebhookError {
    /// Not a URL we may call.
    #[error("callback_url refused: {0}")]
    Refused(String),
    /// The name does not resolve (may be transient).
    #[error("callback host does not resolve: {0}")]
    Resolve(String),
}

/// The callback policy, from `[webhooks]`.
#[derive(Debug, Clone, Default)]
pub struct WebhookPolicy {
    /// HMAC secret; no webhooks without one.
    pub secret: Option<String>,
    /// Allowed hosts.
    pub allow_hosts: Vec<String>,
    /// Allow RFC 1918 / ULA addresses.
    pub allow_private: bool,
    /// Allow loopback addresses.
    pub allow_loopback: bool,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl WebhookPolicy {
    /// Builds the policy from the resolved settings.
    pub fn from_settings(u: &crate::config::UploadSettings) -> Self {
        WebhookPolicy {
            secret: u.webhook_secret.clone(),
            allow_hosts: u.webhook_allow_hosts.clone(),
            allow_private: u.webhook_allow_private,
            allow_loopback: u.webhook_allow_loopback,
            timeout: u.webhook_timeout,
        }
    }

    /// Checks a URL's form, length and host against the allow-list (no DNS): what the api does at upload
    /// time.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, WebhookError> {
        let refuse = |m: &str| Err(WebhookError::Refused(m.to_owned()));
        if self.secret.is_none() {
            return refuse("webhooks are not configured on this server ([webhooks] secret)");
        }
        if raw.len() > CALLBACK_URL_MAX {
            return Err(WebhookError::Refused(format!(
                "callback URLs are at most {CALLBACK_URL_MAX} bytes"
            )));
        }
        let url = url::Url::parse(raw).map_err(|e| WebhookError::Refused(format!("{e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return refuse("only http and https callbacks are allowed");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("callback URLs may not carry credentials");
        }
        let host = url
            .host_str()
            .ok_or_else(|| WebhookError::Refused("callback URL has no host".into()))?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !self.host_allowed(&host) {
            return Err(WebhookError::Refused(format!(
                "host {host:?} is not in the webhook allow-list"
            )));
        }
        Ok(url)
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allow_hosts.iter().any(|pat| {
            let pat = pat.trim_end_matches('.').to_ascii_lowercase();
            match pat.strip_prefix("*.") {
                Some(domain) => host.len() > domain.len() && host.ends_with(&format!(".{domain}")),
                None => host == pat,
            }
        })
    }

    /// Whether an address may be called.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_loopback() {
            return self.allow_loopback;
        }
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                let cgnat = o[0] == 100 && (64..128).contains(&o[1]);
                let reserved = o[0] == 0 || o[0] >= 240 || (o[0] == 192 && o[1] == 0 && o[2] == 0);
                if v4.is_link_local()
                    || v4.is_multicast()
                    || v4.is_broadcast()
                    || v4.is_documentation()
                    || v4.is_unspecified()
                    || reserved
                {
                    return false;
                }
                if v4.is_private() || cgnat {
                    return self.allow_private;
                }
                true
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                let link_local = (s[0] & 0xffc0) == 0xfe80;
                let unique_local = (s[0] & 0xfe00) == 0xfc00;
                let documentation = s[0] == 0x2001 && s[1] == 0x0db8;
                if link_local || v6.is_multicast() || v6.is_unspecified() || documentation {
                    return false;
                }
                if unique_local {
                    return self.allow_private;
                }
                true
            }
        }
    }

    /// Checks the URL, resolves its host and checks every address. Returns the URL and the address to pin.
    pub async fn resolve(&self, raw: &str) -> Result<(url::Url, SocketAddr), WebhookError> {
        let url = self.check_url(raw)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            _ => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| WebhookError::Resolve(format!("{host}: {e}")))?
                .collect(),
        };
        // Every answer must pass: a name with one public and one private address is refused, so the
        // choice of address can never be steered to the private one.
        if let Some(bad) = addrs.iter().find(|a| !self.address_allowed(a.ip())) {
            return Err(WebhookError::Refused(format!(
                "{host} resolves to {}, a non-public address",
                bad.ip()
            )));
        }
        let first = addrs
            .first()
            .copied()
            .ok_or_else(|| WebhookError::Resolve(format!("{host}: no addresses")))?;
        Ok((url, first))
    }
}

/// `Mediafleet-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`.
pub fn signature(secret: &str, unix: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{unix}.").as_bytes());
    mac.update(body);
    format!("t={unix},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a `Mediafleet-Signature` header (what a receiver does), allowing `tolerance` of clock skew.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    // abs_diff: a hostile `t` far from `now` must not overflow `now - t` (a panic in debug builds, and a
    // wrapped difference that passes the check in release builds).
    if tolerance < 0 || now.abs_diff(t) > tolerance.unsigned_abs() {
        return false;
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> WebhookPolicy {
        WebhookPolicy {
            secret: Some("s".into()),
            allow_hosts: vec!["hooks.example.com".into(), "*.apps.example.net".into()],
            ..Default::default()
        }
    }

    /// Found by the `signed_url` fuzz target (fuzz/regressions/signed_url/webhook-t-overflow.bin): a `t` so far
    /// from the receiver's clock that `now - t` overflowed panicked before the signature was even checked (debug
    /// builds); in release builds the wrapped difference let a signature with `t = now - 2^63` pass.
    #[test]
    fn timestamps_at_the_edges_of_i64_are_refused_not_a_panic() {
        let now = 1_764_670_000;
        let ok = |t: i64| verify("s", &signature("s", t, b"{}"), b"{}", now, 300);
        for t in [
            i64::MIN,
            -9_223_372_036_854_770_000,
            now.wrapping_add(i64::MIN),
            i64::MAX,
        ] {
            assert!(!ok(t), "t={t}");
        }
        assert!(ok(now - 300) && ok(now + 300));
        assert!(!ok(now - 301) && !ok(now + 301));
    }

    #[test]
    fn allow_list_and_forms() {
        let p = policy();
        assert!(p.check_url("https://hooks.example.com/x").is_ok());
        assert!(p.check_url("https://a.apps.example.net/x").is_ok());
        assert!(p.check_url("https://apps.example.net/x").is_err());
        assert!(p.check_url("https://evil.com/x").is_err());
        assert!(p.check_url("https://hooks.example.com.evil.com/").is_err());
        assert!(p.check_url("ftp://hooks.example.com/").is_err());
        assert!(p.check_url("https://u:p@hooks.example.com/").is_err());
        let long = format!("https://hooks.example.com/{}", "a".repeat(CALLBACK_URL_MAX));
        assert!(p
            .check_url(&long)
            .unwrap_err()
            .to_string()
            .contains("at most"));
    }

    #[test]
    fn non_public_addresses_are_refused() {
        let p = policy();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!p.address_allowed(bad.parse().unwrap()), "{bad} allowed");
        }
        assert!(p.address_allowed("93.184.216.34".parse().unwrap()));
        let open = WebhookPolicy {
            allow_loopback: true,
            ..policy()
        };
        assert!(open.address_allowed("127.0.0.1".parse().unwrap()));
        assert!(!open.address_allowed("169.254.169.254".parse().unwrap()));
    }

    #[test]
    fn signatures_verify() {
        let h = signature("secret", 1_700_000_000, b"{\"id\":1}");
        assert!(h.starts_with("t=1700000000,v1="));
        assert!(verify("secret", &h, b"{\"id\":1}", 1_700_000_010, 300));
        assert!(!verify("secret", &h, b"{\"id\":2}", 1_700_000_010, 300));
        assert!(!verify("other", &h, b"{\"id\":1}", 1_700_000_010, 300));
        assert!(!verify("secret", &h, b"{\"id\":1}", 1_700_009_999, 300));
    }
}

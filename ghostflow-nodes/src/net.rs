//! The HTTP client shared by every family that speaks HTTP (requests,
//! webhooks, model providers), and the engine's network policy.
//!
//! One [`reqwest::Client`] per engine: its connection pool serves every
//! node of every execution. TLS is rustls with the `ring` provider and the
//! operating system's root certificates. The client follows no redirects
//! and uses no proxy: nodes that follow redirects do it hop by hop, so that
//! each hop is checked against the policy.
//!
//! A server that runs flows written by people it does not trust gives its
//! engine a [`NetworkPolicy`] that refuses private, loopback and link-local
//! addresses:
//!
//! ```
//! use ghostflow::Engine;
//! use ghostflow_nodes::NetworkPolicy;
//!
//! let engine = Engine::builder()
//!     .resource(NetworkPolicy::public_only())
//!     .build();
//! # drop(engine);
//! ```
//!
//! The policy is applied where names become addresses, so a public name
//! that resolves to `10.0.0.7` is refused as surely as the literal address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ghostflow::{Context, NodeError};

/// Which addresses the HTTP nodes of an engine may reach. The default
/// allows every address; give an engine [`NetworkPolicy::public_only`] as a
/// resource to refuse private ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Refuse loopback, private (RFC 1918, unique local), link-local
    /// (including cloud metadata at 169.254.169.254), carrier-grade NAT,
    /// unspecified, broadcast, multicast, documentation and other reserved
    /// addresses: what a flow written by someone else should not reach
    /// from inside your network.
    pub deny_private: bool,
    /// Host names (or IP literals) reachable even when they resolve to a
    /// private address (exact, case-insensitive), such as an internal model
    /// server. A redirect to another host is checked again.
    pub allow_hosts: Vec<String>,
}

impl NetworkPolicy {
    /// A policy that refuses every non-public address.
    pub fn public_only() -> Self {
        NetworkPolicy {
            deny_private: true,
            allow_hosts: Vec::new(),
        }
    }

    /// This policy, with `host` reachable whatever its address.
    #[must_use]
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allow_hosts.push(host.into());
        self
    }

    /// Whether `host` (a name or an IP literal, IPv6 with or without
    /// brackets) is exempt.
    fn allows_host(&self, host: &str) -> bool {
        let unbracketed = |h: &str| h.trim_start_matches('[').trim_end_matches(']').to_owned();
        let host = unbracketed(host);
        self.allow_hosts
            .iter()
            .any(|allowed| unbracketed(allowed).eq_ignore_ascii_case(&host))
    }

    /// Checks a URL before a request: its scheme, and its host when that is
    /// a literal address (names are checked when they resolve).
    ///
    /// # Errors
    /// A permanent error naming the URL and why it is refused.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), NodeError> {
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(NodeError::permanent(format!(
                    "{url}: unsupported scheme `{other}`; use http or https"
                )));
            }
        }
        if url.host().is_none() {
            return Err(NodeError::permanent(format!("{url}: the URL has no host")));
        }
        match self.refusal(url) {
            Some(refusal) => {
                Err(NodeError::permanent(format!("{url}: {refusal}")).with_source(refusal))
            }
            None => Ok(()),
        }
    }

    /// Why this policy refuses the host of `url` when it is an IP literal,
    /// or `None` (names are checked when they resolve).
    pub fn refusal(&self, url: &reqwest::Url) -> Option<Refusal> {
        if !self.deny_private {
            return None;
        }
        let ip = match url.host()? {
            url::Host::Ipv4(v4) => IpAddr::V4(v4),
            url::Host::Ipv6(v6) => IpAddr::V6(v6),
            url::Host::Domain(_) => return None,
        };
        let host = url.host_str().unwrap_or_default();
        if self.allows_host(host) {
            return None;
        }
        special_range(ip).map(|range| Refusal {
            host: host.to_owned(),
            addr: ip,
            range,
            resolved: false,
        })
    }
}

/// A network policy's refusal of one address, with the range it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The host as written in the URL.
    pub host: String,
    /// The refused address.
    pub addr: IpAddr,
    /// Its range, in words (`a loopback address`).
    pub range: &'static str,
    /// Whether the host is a name that resolved to `addr` (not a literal).
    pub resolved: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.resolved {
            write!(
                f,
                "`{}` resolves to {}, {}",
                self.host, self.addr, self.range
            )?;
        } else {
            write!(f, "{} is {}", self.addr, self.range)?;
        }
        f.write_str(", which this engine's network policy refuses")
    }
}

impl std::error::Error for Refusal {}

/// Whether `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    special_range(ip).is_none()
}

/// The special-purpose range `ip` belongs to, in words (`a loopback
/// address`), or `None` for an ordinary public address.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "an unspecified (\"this network\") address",
        (10, _, _) => "a private (RFC 1918) address",
        (100, 64..=127, _) => "a carrier-grade NAT address",
        (127, _, _) => "a loopback address",
        (169, 254, _) => "a link-local address",
        (172, 16..=31, _) => "a private (RFC 1918) address",
        (192, 0, 0) => "an IETF protocol address",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (192, 88, 99) => "a 6to4 relay address",
        (192, 168, _) => "a private (RFC 1918) address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address",
        _ => return None,
    })
}

fn v6_range(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    // Addresses that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_range(v4);
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64: the embedded address is where the packets end up.
        return v4_range(Ipv4Addr::from_bits(ip.to_bits() as u32));
    }
    if segments[0] == 0x2002 {
        // 6to4: the IPv4 address sits in bits 16..48.
        return v4_range(Ipv4Addr::from_bits((ip.to_bits() >> 80) as u32));
    }
    Some(match segments {
        [0, 0, 0, 0, 0, 0, 0, 0] => "an unspecified address",
        [0, 0, 0, 0, 0, 0, 0, 1] => "a loopback address",
        // IPv4-compatible (deprecated).
        [0, 0, 0, 0, 0, 0, _, _] => {
            return v4_range(Ipv4Addr::from_bits(ip.to_bits() as u32))
                .or(Some("an IPv4-compatible address"));
        }
        [0x64, 0xff9b, 1, ..] => "a NAT64 local-use address",
        [0x100, 0, 0, 0, ..] => "a discard-only address",
        [0x2001, 0xdb8, ..] => "a documentation address",
        [0x2001, 0..=0x1ff, ..] => "an IETF protocol address",
        [first, ..] if first & 0xfe00 == 0xfc00 => "a unique-local address",
        [first, ..] if first & 0xffc0 == 0xfe80 => "a link-local address",
        [first, ..] if first & 0xffc0 == 0xfec0 => "a site-local address",
        [first, ..] if first & 0xff00 == 0xff00 => "a multicast address",
        _ => return None,
    })
}

/// The engine's HTTP client and the policy it enforces.
#[derive(Debug)]
pub(crate) struct Net {
    client: Result<reqwest::Client, String>,
    policy: NetworkPolicy,
}

impl Net {
    /// The engine's shared client, made on first use.
    pub(crate) fn get(ctx: &Context) -> Arc<Net> {
        ctx.shared(|| {
            let policy = ctx
                .resource::<NetworkPolicy>()
                .map(|p| (*p).clone())
                .unwrap_or_default();
            Net {
                client: build_client(&policy),
                policy,
            }
        })
    }

    /// The client, after checking `url` against the policy.
    ///
    /// # Errors
    /// The URL is refused, or the client could not be made.
    pub(crate) fn client_for(&self, url: &reqwest::Url) -> Result<&reqwest::Client, NodeError> {
        self.policy.check_url(url)?;
        self.client
            .as_ref()
            .map_err(|e| NodeError::permanent(format!("cannot make the HTTP client: {e}")))
    }

    /// The policy this engine's requests obey, for callers that report a
    /// refusal in their own words ([`NetworkPolicy::refusal`]).
    pub(crate) fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }
}

fn build_client(policy: &NetworkPolicy) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("ghostflow/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        .tls_backend_preconfigured(tls_config()?);
    if policy.deny_private {
        builder = builder.dns_resolver(Arc::new(GuardedResolver {
            policy: policy.clone(),
        }));
    }
    builder.build().map_err(|e| e.to_string())
}

/// The rustls configuration of every HTTPS connection: `ring`, TLS 1.2 and
/// 1.3, the operating system's roots (loaded once per process).
pub(crate) fn tls_config() -> Result<rustls::ClientConfig, String> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let mut store = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        // Unreadable certificates are skipped: a partial store still serves
        // the sites its other roots cover, and HTTPS to the rest fails with
        // rustls's "unknown issuer", which names the problem.
        store.add_parsable_certificates(found.certs);
        Arc::new(store)
    });
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| {
            b.with_root_certificates(roots.clone())
                .with_no_client_auth()
        })
}

/// Resolves names with the system resolver and drops the addresses the
/// policy refuses; a name left with none fails with a [`Refusal`].
struct GuardedResolver {
    policy: NetworkPolicy,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver").finish_non_exhaustive()
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allowed = self.policy.allows_host(&host);
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allowed {
                return Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs);
            }
            let mut refused = None;
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match special_range(addr.ip()) {
                    Some(range) => {
                        refused.get_or_insert((addr.ip(), range));
                        false
                    }
                    None => true,
                })
                .collect();
            match (kept.is_empty(), refused) {
                (true, Some((addr, range))) => Err(Box::new(Refusal {
                    host,
                    addr,
                    range,
                    resolved: true,
                })
                    as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// 5xx, 408 Request Timeout and 429 Too Many Requests may pass later.
#[cfg_attr(
    not(any(feature = "http", feature = "ai")),
    expect(
        dead_code,
        reason = "used by the http and ai families, and neither is enabled"
    )
)]
pub(crate) fn status_is_retryable(status: reqwest::StatusCode) -> bool {
    use reqwest::StatusCode;
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> Option<&'static str> {
        special_range(text.parse().unwrap())
    }

    #[test]
    fn private_and_reserved_addresses_are_named() {
        for (ip, expected) in [
            ("127.0.0.1", "a loopback address"),
            ("127.255.0.9", "a loopback address"),
            ("10.1.2.3", "a private (RFC 1918) address"),
            ("172.16.0.1", "a private (RFC 1918) address"),
            ("172.31.255.255", "a private (RFC 1918) address"),
            ("192.168.1.1", "a private (RFC 1918) address"),
            ("169.254.169.254", "a link-local address"),
            ("0.0.0.0", "an unspecified (\"this network\") address"),
            ("0.1.2.3", "an unspecified (\"this network\") address"),
            ("100.64.0.1", "a carrier-grade NAT address"),
            ("192.0.2.1", "a documentation address"),
            ("198.18.0.1", "a benchmarking address"),
            ("224.0.0.1", "a multicast address"),
            ("240.0.0.1", "a reserved or broadcast address"),
            ("255.255.255.255", "a reserved or broadcast address"),
            ("::1", "a loopback address"),
            ("::", "an unspecified address"),
            ("fe80::1", "a link-local address"),
            ("fd12:3456::1", "a unique-local address"),
            ("fc00::1", "a unique-local address"),
            ("ff02::1", "a multicast address"),
            ("2001:db8::1", "a documentation address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("::ffff:10.0.0.1", "a private (RFC 1918) address"),
            ("64:ff9b::a00:1", "a private (RFC 1918) address"),
            ("64:ff9b::a9fe:a9fe", "a link-local address"),
            ("2002:7f00:1::", "a loopback address"),
            ("::127.0.0.1", "a loopback address"),
        ] {
            assert_eq!(range(ip), Some(expected), "{ip}");
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:0808:0808::",
        ] {
            assert_eq!(range(ip), None, "{ip}");
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn literal_private_urls_are_refused_by_a_public_only_policy() {
        let policy = NetworkPolicy::public_only();
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        let err = policy
            .check_url(&url("http://169.254.169.254/latest/meta-data"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "http://169.254.169.254/latest/meta-data: 169.254.169.254 is a link-local address, which this engine's network policy refuses"
        );
        assert!(!err.is_retryable());
        let err = policy
            .check_url(&url("http://127.0.0.1:8080/x"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "http://127.0.0.1:8080/x: 127.0.0.1 is a loopback address, which this engine's network policy refuses"
        );
        // The URL parser normalizes other spellings of an IPv4 address.
        for refused in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::1]:8080/",
            "http://[::ffff:7f00:1]/",
        ] {
            assert!(policy.check_url(&url(refused)).is_err(), "{refused}");
        }
        assert!(policy.check_url(&url("https://example.com/")).is_ok());
        assert!(policy.check_url(&url("https://1.1.1.1/")).is_ok());
        // Names are checked when they resolve.
        assert!(policy.check_url(&url("http://localhost/")).is_ok());
        let err = policy.check_url(&url("file:///etc/passwd")).unwrap_err();
        assert!(
            err.to_string().contains("unsupported scheme `file`"),
            "{err}"
        );
        // The default allows everything; an allowed host passes by name,
        // IPv6 literals with or without brackets.
        assert!(
            NetworkPolicy::default()
                .check_url(&url("http://127.0.0.1/"))
                .is_ok()
        );
        let allowing = NetworkPolicy::public_only()
            .allow_host("127.0.0.1")
            .allow_host("::1");
        assert!(allowing.check_url(&url("http://127.0.0.1/")).is_ok());
        assert!(allowing.check_url(&url("http://[::1]/")).is_ok());
        assert!(allowing.check_url(&url("http://127.0.0.2/")).is_err());
    }

    /// A one-shot HTTP/1.1 server on an ephemeral port: answers one request
    /// with `body` and closes.
    async fn serve_once(body: &'static str) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn the_shared_client_speaks_http_and_obeys_the_policy() {
        let addr = serve_once("pong").await;
        let open = Net {
            client: build_client(&NetworkPolicy::default()),
            policy: NetworkPolicy::default(),
        };
        let url = reqwest::Url::parse(&format!("http://{addr}/ping")).unwrap();
        let response = open
            .client_for(&url)
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "pong");

        let guarded = Net {
            client: build_client(&NetworkPolicy::public_only()),
            policy: NetworkPolicy::public_only(),
        };
        let url = reqwest::Url::parse(&format!("http://{addr}/ping")).unwrap();
        assert!(guarded.client_for(&url).is_err());
        // A name that resolves to loopback fails at resolution.
        let url = reqwest::Url::parse(&format!("http://localhost:{}/ping", addr.port())).unwrap();
        let err = guarded
            .client_for(&url)
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap_err();
        let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        assert!(
            chain.contains("`localhost` resolves to ") && chain.contains("a loopback address"),
            "{chain}"
        );
        assert!(tls_config().is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        use reqwest::dns::Resolve;
        let resolver = GuardedResolver {
            policy: NetworkPolicy::public_only(),
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost resolved under a public-only policy"),
            Err(e) => e,
        };
        let refusal = err.downcast_ref::<Refusal>().expect("a Refusal");
        assert_eq!(refusal.host, "localhost");
        assert!(
            refusal.resolved && refusal.addr.is_loopback(),
            "{refusal:?}"
        );
        assert!(
            err.to_string()
                .ends_with("a loopback address, which this engine's network policy refuses"),
            "{err}"
        );
        let resolver = GuardedResolver {
            policy: NetworkPolicy::public_only().allow_host("localhost"),
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(resolver.resolve(name).await.is_ok());
    }
}

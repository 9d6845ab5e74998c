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
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
    /// unspecified, broadcast and multicast addresses.
    pub deny_private: bool,
    /// Host names reachable even when they resolve to a private address
    /// (exact, case-insensitive), such as an internal model server.
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

    fn allows_host(&self, host: &str) -> bool {
        self.allow_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
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
        let Some(host) = url.host() else {
            return Err(NodeError::permanent(format!("{url}: the URL has no host")));
        };
        if !self.deny_private || self.allows_host(&host.to_string()) {
            return Ok(());
        }
        let ip = match host {
            url::Host::Ipv4(v4) => IpAddr::V4(v4),
            url::Host::Ipv6(v6) => IpAddr::V6(v6),
            url::Host::Domain(_) => return Ok(()),
        };
        if is_public(ip) {
            Ok(())
        } else {
            Err(NodeError::permanent(format!(
                "{url}: {ip} is a private address, which this engine's network policy refuses"
            )))
        }
    }
}

/// Whether `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local fc00::/7 and link-local fe80::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // NAT64 well-known prefix 64:ff9b::/96 embeds IPv4.
                || (v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                    && !is_public_v4(Ipv4Addr::from_bits(v6.to_bits() as u32))))
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        // Carrier-grade NAT 100.64.0.0/10 and "this network" 0.0.0.0/8.
        || (a == 100 && (b & 0xc0) == 64)
        || a == 0
        // Reserved 240.0.0.0/4.
        || a >= 240)
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
/// policy refuses; a name left with none is an error naming it.
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
            let kept: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allowed || is_public(a.ip()))
                .collect();
            if kept.is_empty() {
                let shown = found
                    .first()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                return Err(format!(
                    "`{host}` resolves to the private address {shown}, which this engine's network policy refuses"
                )
                .into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
        ] {
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
            "http://169.254.169.254/latest/meta-data: 169.254.169.254 is a private address, which this engine's network policy refuses"
        );
        assert!(policy.check_url(&url("http://[::1]:8080/")).is_err());
        assert!(policy.check_url(&url("https://example.com/")).is_ok());
        assert!(policy.check_url(&url("https://1.1.1.1/")).is_ok());
        let err = policy.check_url(&url("file:///etc/passwd")).unwrap_err();
        assert!(
            err.to_string().contains("unsupported scheme `file`"),
            "{err}"
        );
        // The default allows everything; an allowed host passes by name.
        assert!(
            NetworkPolicy::default()
                .check_url(&url("http://127.0.0.1/"))
                .is_ok()
        );
        assert!(
            NetworkPolicy::public_only()
                .allow_host("127.0.0.1")
                .check_url(&url("http://127.0.0.1/"))
                .is_ok()
        );
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
        assert!(chain.contains("resolves to the private address"), "{chain}");
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
            Err(e) => e.to_string(),
        };
        assert!(
            err.starts_with("`localhost` resolves to the private address"),
            "{err}"
        );
        let resolver = GuardedResolver {
            policy: NetworkPolicy::public_only().allow_host("localhost"),
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(resolver.resolve(name).await.is_ok());
    }
}

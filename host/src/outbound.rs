//! The one outbound HTTP client: what stephost sends to the world
//! (callbacks, and requests steps make) goes through [`Outbound`], which
//! cannot be turned against the host or its network.
//!
//! - Only `http` and `https`, and no credentials in the URL.
//! - The host is judged before anything is sent. An IP literal (in any
//!   spelling: the URL parser normalises decimal, octal and hex IPv4, so
//!   `2130706433`, `0x7f000001` and `0177.0.0.1` are all `127.0.0.1`) and
//!   `localhost` are judged as they stand; a name is resolved, and refused
//!   when **any** of its addresses is not a public unicast one
//!   ([`address::refused`]).
//! - The connection goes to the addresses that were checked: the client's
//!   resolver is the checking one, so there is no second resolution for
//!   DNS rebinding to exploit.
//! - Redirects are not followed (a 3xx is the answer), and no proxy from
//!   the environment is used.
//! - The operator may open private networks (`outbound-allow-networks`)
//!   for internal services.
//!
//! It is built on reqwest, which the command-line client already uses:
//! it lets the resolver be replaced (hyper-util's connector then connects
//! to exactly what the resolver returned), turns redirects and proxies off,
//! and bounds connect and whole-request time. This module must not know
//! what it sends: signing, retries and limits belong to its callers.

pub mod address;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};

pub use address::Class;

/// Why a target is refused before any connection is made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a URL at all.
    #[error("`{url}` is not a URL: {reason}")]
    Invalid {
        /// What was given.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// A scheme other than `http` and `https` (`file:`, `gopher:`, ...).
    #[error("`{scheme}:` URLs are refused: only http and https may be reached")]
    Scheme {
        /// The scheme given.
        scheme: String,
    },
    /// `http://user:password@host/`.
    #[error("URLs with credentials (`user:password@`) are refused: send credentials in a header")]
    Credentials,
    /// A URL without a host (`http:///x`).
    #[error("the URL has no host")]
    NoHost,
    /// The host is, or resolves to, an address of a refused kind.
    #[error(
        "{host} is refused: {addr} is {class}; an operator may open its network with \
         `outbound-allow-networks`"
    )]
    Address {
        /// The host as the URL names it (after normalisation).
        host: String,
        /// The address that decided.
        addr: IpAddr,
        /// What kind of address it is.
        class: Class,
    },
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The target is refused: nothing was sent, and sending again will
    /// not help.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No answer within the request's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The host could not be resolved or connected to.
    #[error("could not connect: {0}")]
    Unreachable(String),
    /// The exchange failed after connecting (reset, bad HTTP, TLS).
    #[error("the request failed: {0}")]
    Failed(String),
}

/// Looks names up. The system resolver by default; tests put their own
/// names in.
pub trait Lookup: Send + Sync + std::fmt::Debug + 'static {
    /// The addresses of `host`.
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// What the outbound layer is told by configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Private networks requests may reach after all
    /// (`outbound-allow-networks`).
    pub allow_networks: Vec<IpNet>,
    /// The longest a connection may take to open.
    pub connect_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allow_networks: Vec::new(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Where to, checked by [`Outbound::check`] before anything is sent.
    pub url: Url,
    /// The headers to send.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The longest the whole exchange may take, reading the answer
    /// included.
    pub timeout: Duration,
    /// The most bytes of the answer's body to keep; the rest is not read.
    pub max_response_bytes: usize,
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Its status (a 3xx is not followed).
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, at most the request's `max_response_bytes`.
    pub body: Bytes,
    /// Whether the body went on past that.
    pub truncated: bool,
    /// From sending to the end of what was read.
    pub duration: Duration,
}

/// The outbound client. Cheap to clone; one per process.
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allowed: Arc<[IpNet]>,
    connect_timeout: Duration,
}

impl Outbound {
    /// The client, resolving with the system's resolver.
    pub fn new(settings: &Settings) -> Result<Self, Failure> {
        Self::with_lookup(settings, Arc::new(SystemLookup))
    }

    /// The client, resolving names with `lookup`.
    pub fn with_lookup(settings: &Settings, lookup: Arc<dyn Lookup>) -> Result<Self, Failure> {
        let allowed: Arc<[IpNet]> = settings.allow_networks.clone().into();
        let resolver = CheckingResolver {
            lookup,
            allowed: allowed.clone(),
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .referer(false)
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("stephost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Failed(causes(&e)))?;
        Ok(Self {
            client,
            allowed,
            connect_timeout: settings.connect_timeout,
        })
    }

    /// Parses `url` and checks everything that can be checked without a
    /// lookup: the scheme, credentials, and a host that is an address (or
    /// `localhost`, which is loopback by definition, RFC 6761).
    pub fn check(&self, url: &str) -> Result<Url, Refusal> {
        let parsed = Url::parse(url).map_err(|e| Refusal::Invalid {
            url: url.chars().take(200).collect(),
            reason: e.to_string(),
        })?;
        self.check_url(&parsed)?;
        Ok(parsed)
    }

    /// [`Outbound::check`] of a parsed URL.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(Refusal::Scheme {
                    scheme: other.to_owned(),
                });
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Credentials);
        }
        let host = url.host().ok_or(Refusal::NoHost)?;
        let literal = match host {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(name) => {
                is_localhost(name).then_some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
        };
        match literal {
            Some(addr) => self.judge(&host.to_string(), addr),
            None => Ok(()),
        }
    }

    fn judge(&self, host: &str, addr: IpAddr) -> Result<(), Refusal> {
        match address::refused(addr, &self.allowed) {
            Some(class) => Err(Refusal::Address {
                host: host.to_owned(),
                addr,
                class,
            }),
            None => Ok(()),
        }
    }

    /// Sends `request` and reads at most `max_response_bytes` of the
    /// answer, within the request's timeout.
    pub async fn send(&self, request: Request) -> Result<Response, Failure> {
        let started = Instant::now();
        let timeout = request.timeout;
        let max = request.max_response_bytes;
        let exchange = async {
            let mut answer = self
                .open(request.method, request.url, request.headers, request.body)
                .await?;
            let status = answer.status();
            let headers = std::mem::take(answer.headers_mut());
            let mut body = BytesMut::new();
            let mut truncated = false;
            while let Some(chunk) = answer.chunk().await.map_err(|e| failure(&e, timeout))? {
                let room = max - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Response {
                status,
                headers,
                body: body.freeze(),
                truncated,
                duration: started.elapsed(),
            })
        };
        // reqwest's own timeout would need a client per timeout; one
        // around the exchange bounds the body's reading too.
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(Failure::Timeout(timeout)))
    }

    /// Sends a request and returns the answer once its head has arrived,
    /// its body still to be read (by the caller, who bounds time and
    /// size). The URL is checked first, and names are resolved by the
    /// checking resolver, as for [`Outbound::send`].
    pub async fn open(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, Failure> {
        self.check_url(&url)?;
        self.client
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| failure(&e, self.connect_timeout))
    }
}

/// `localhost` and its subdomains (RFC 6761), with or without the final
/// dot.
fn is_localhost(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .len()
            .checked_sub(".localhost".len())
            .is_some_and(|at| {
                name.is_char_boundary(at) && name[at..].eq_ignore_ascii_case(".localhost")
            })
}

/// reqwest's resolver: looks the name up and refuses it when any address
/// is refused, so the connector only ever sees checked addresses.
#[derive(Debug)]
struct CheckingResolver {
    lookup: Arc<dyn Lookup>,
    allowed: Arc<[IpNet]>,
}

impl reqwest::dns::Resolve for CheckingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let lookup = self.lookup.clone();
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let addrs = lookup.lookup(host.clone()).await?;
            if addrs.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            if let Some((addr, class)) = addrs
                .iter()
                .find_map(|a| address::refused(*a, &allowed).map(|c| (*a, c)))
            {
                return Err(Box::new(Refusal::Address { host, addr, class }) as _);
            }
            // Port 0: the connector puts the URL's port in.
            let addrs: Vec<SocketAddr> = addrs.into_iter().map(|a| SocketAddr::new(a, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What a reqwest error means here: a refusal from the resolver, a
/// timeout, a connection that never opened, or a failed exchange. The
/// message leaves the URL out (its query may hold a secret).
fn failure(e: &reqwest::Error, timeout: Duration) -> Failure {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(refusal) = err.downcast_ref::<Refusal>() {
            return Failure::Refused(refusal.clone());
        }
        next = err.source();
    }
    if e.is_timeout() {
        Failure::Timeout(timeout)
    } else if e.is_connect() {
        Failure::Unreachable(causes(e))
    } else {
        Failure::Failed(causes(e))
    }
}

/// The causes of a reqwest error, innermost last, without the URL.
fn causes(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_are_recognised() {
        for name in ["localhost", "LOCALHOST.", "a.localhost", "x.y.Localhost"] {
            assert!(is_localhost(name), "{name}");
        }
        for name in ["localhost.com", "notlocalhost", "localhostx", "example.org"] {
            assert!(!is_localhost(name), "{name}");
        }
    }
}

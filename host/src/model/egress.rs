//! Which hosts a step may call over HTTP: host patterns, the allowlists
//! made of them (a step's `allow_http`, a tenant's egress, the server's
//! `step-http-allow`), and what one attempt was granted and did.
//!
//! A pattern is `host`, `host:port`, `*.domain`, `*.domain:port`, `*` or
//! `*:port`. A host is a DNS name (compared without case and without a
//! final dot), an IPv4 address in dotted-decimal form, or an IPv6 address
//! in brackets. `*.example.org` matches every name under `example.org`
//! but not `example.org` itself. Without a port, any port matches.
//!
//! A pattern never makes an address reachable that the outbound layer
//! refuses (loopback, private networks, metadata addresses): an allowlist
//! narrows what steps may call; it does not widen the outbound rules.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The host part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostMatch {
    /// `*`: any host.
    Any,
    /// `*.example.org`: names under `example.org` (stored without `*.`).
    Under(String),
    /// `api.example.com`: exactly this name.
    Name(String),
    /// `10.1.2.3`, `[2001:db8::1]`: exactly this address.
    Addr(IpAddr),
}

/// One entry of an allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
}

/// Why a text is not a host pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{pattern}` is not a host pattern: {reason}")]
pub struct BadPattern {
    /// The text, cut to 100 characters.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The longest DNS name (RFC 1035).
const MAX_NAME: usize = 253;
/// The longest DNS label.
const MAX_LABEL: usize = 63;

impl HostPattern {
    /// Whether a request to `host` on `port` matches. `host` is as the URL
    /// parser gives it: a name (lowercased), a dotted-decimal IPv4
    /// address, or an IPv6 address in brackets.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Name(name) => host.eq_ignore_ascii_case(name),
            HostMatch::Under(domain) => host
                .len()
                .checked_sub(domain.len() + 1)
                .filter(|&at| at > 0 && host.is_char_boundary(at))
                .is_some_and(|at| {
                    host.as_bytes()[at] == b'.' && host[at + 1..].eq_ignore_ascii_case(domain)
                }),
            HostMatch::Addr(addr) => parse_addr(host).is_some_and(|a| a == *addr),
        }
    }
}

/// An address as a URL spells it: dotted-decimal IPv4, or IPv6 in
/// brackets.
fn parse_addr(host: &str) -> Option<IpAddr> {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn bad(pattern: &str, reason: impl Into<String>) -> BadPattern {
    BadPattern {
        pattern: pattern.chars().take(100).collect(),
        reason: reason.into(),
    }
}

/// Whether `name` is a DNS name of letters, digits and hyphens in labels
/// of 1 to 63 characters, not starting or ending with a hyphen.
fn name_problem(name: &str) -> Option<String> {
    if name.len() > MAX_NAME {
        return Some(format!("the name is over {MAX_NAME} characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("the name has an empty label".into());
        }
        if label.len() > MAX_LABEL {
            return Some(format!("a label is over {MAX_LABEL} characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Some(format!(
                "`{c}` may not appear in a host name (letters, digits, hyphens and dots; \
                 write an internationalised name in its xn-- form)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("a label may not start or end with a hyphen".into());
        }
    }
    None
}

impl FromStr for HostPattern {
    type Err = BadPattern;

    fn from_str(text: &str) -> Result<Self, BadPattern> {
        if text.is_empty() {
            return Err(bad(text, "it is empty"));
        }
        if text.contains("://") {
            return Err(bad(
                text,
                "write the host alone (`api.example.com`), without a scheme",
            ));
        }
        if text.contains(['/', '?', '#', '@']) || text.chars().any(char::is_whitespace) {
            return Err(bad(
                text,
                "a pattern is a host with an optional port: no path, query, user or spaces",
            ));
        }
        // Split off the port: after `]` for IPv6, else after the only `:`.
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err(bad(text, "an IPv6 address needs its closing `]`"));
            };
            let after = &rest[end + 1..];
            let port =
                match after {
                    "" => None,
                    p => Some(p.strip_prefix(':').ok_or_else(|| {
                        bad(text, "only `:port` may follow an IPv6 address's `]`")
                    })?),
                };
            (&text[..end + 2], port)
        } else {
            match text.split_once(':') {
                Some((_, p)) if p.contains(':') => {
                    return Err(bad(
                        text,
                        "write an IPv6 address in brackets: `[2001:db8::1]`",
                    ));
                }
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => {
                    return Err(bad(text, format!("`{p}` is not a port (1 to 65535)")));
                }
                Ok(p) => Some(p),
            },
        };
        let lower = host.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        let host = if lower == "*" {
            HostMatch::Any
        } else if let Some(domain) = lower.strip_prefix("*.") {
            if let Some(problem) = name_problem(domain) {
                return Err(bad(text, problem));
            }
            HostMatch::Under(domain.to_owned())
        } else if lower.contains('*') {
            return Err(bad(
                text,
                "`*` may only stand alone or begin the pattern as `*.`",
            ));
        } else if lower.starts_with('[') {
            match parse_addr(lower) {
                Some(addr) => HostMatch::Addr(addr),
                None => return Err(bad(text, "not an IPv6 address")),
            }
        } else if lower.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            match lower.parse::<Ipv4Addr>() {
                Ok(v4) => HostMatch::Addr(IpAddr::V4(v4)),
                Err(_) => {
                    return Err(bad(
                        text,
                        "not an IPv4 address (write four decimal numbers, `10.1.2.3`)",
                    ));
                }
            }
        } else {
            if let Some(problem) = name_problem(lower) {
                return Err(bad(text, problem));
            }
            HostMatch::Name(lower.to_owned())
        };
        Ok(Self { host, port })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostMatch::Any => f.write_str("*")?,
            HostMatch::Under(d) => write!(f, "*.{d}")?,
            HostMatch::Name(n) => f.write_str(n)?,
            HostMatch::Addr(IpAddr::V4(a)) => write!(f, "{a}")?,
            HostMatch::Addr(IpAddr::V6(a)) => write!(f, "[{a}]")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for HostPattern {
    type Error = BadPattern;

    fn try_from(s: String) -> Result<Self, BadPattern> {
        s.parse()
    }
}

impl From<HostPattern> for String {
    fn from(p: HostPattern) -> String {
        p.to_string()
    }
}

/// Parses every entry of `list`, giving each bad one with its index.
pub fn parse_patterns(list: &[String]) -> Result<Vec<HostPattern>, Vec<(usize, BadPattern)>> {
    let mut patterns = Vec::with_capacity(list.len());
    let mut problems = Vec::new();
    for (i, text) in list.iter().enumerate() {
        match text.parse() {
            Ok(p) => patterns.push(p),
            Err(e) => problems.push((i, e)),
        }
    }
    if problems.is_empty() {
        Ok(patterns)
    } else {
        Err(problems)
    }
}

/// One list a request must be allowed by, with whose it is for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    /// Whose list this is, as a denial names it: "the step's `allow_http`".
    pub whose: &'static str,
    /// Its patterns; empty allows nothing.
    pub patterns: Vec<HostPattern>,
}

impl Allowlist {
    /// Whether any pattern matches.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.patterns.iter().any(|p| p.matches(host, port))
    }
}

/// What one attempt may do over HTTP. Every list must allow a host for a
/// request to it to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    /// The step's, the tenant's and the server's lists, in that order.
    pub allow: Vec<Allowlist>,
    /// The most requests the attempt may make.
    pub max_requests: u32,
    /// The most response body bytes the attempt may read, all requests
    /// together.
    pub max_response_bytes: u64,
    /// The most requests the attempt may have open at once.
    pub max_concurrent: u32,
}

impl HttpGrant {
    /// The first list that does not allow `host:port`, if any.
    pub fn refusing(&self, host: &str, port: u16) -> Option<&Allowlist> {
        self.allow.iter().find(|l| !l.allows(host, port))
    }
}

/// The HTTP caps of an attempt: the server's (configuration), which a
/// step may lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCaps {
    /// The most requests per attempt.
    pub max_requests: u32,
    /// The most response body bytes per attempt.
    pub max_response_bytes: u64,
    /// The most requests open at once per attempt.
    pub max_concurrent: u32,
}

impl HttpCaps {
    /// The defaults: 50 requests, 16 MiB of responses, 4 at once.
    pub const DEFAULT: Self = Self {
        max_requests: 50,
        max_response_bytes: 16 << 20,
        max_concurrent: 4,
    };
}

impl Default for HttpCaps {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What the server lets steps do over HTTP: the ceiling every request
/// must also be allowed by (`step-http-allow`, default `["*"]`) and the
/// caps of an attempt (`step-http-max-*`), which a step may lower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepHttpPolicy {
    /// The server's allowlist.
    pub allow: Vec<HostPattern>,
    /// The caps of an attempt.
    pub caps: HttpCaps,
}

impl Default for StepHttpPolicy {
    fn default() -> Self {
        Self {
            allow: vec![HostPattern {
                host: HostMatch::Any,
                port: None,
            }],
            caps: HttpCaps::DEFAULT,
        }
    }
}

impl StepHttpPolicy {
    /// The grant of an attempt of a step that allows `step` with `caps`
    /// (its own, already at most the server's), of a tenant whose egress
    /// allowlist is `tenant`.
    pub fn grant(
        &self,
        step: Vec<HostPattern>,
        caps: HttpCaps,
        tenant: &[HostPattern],
    ) -> HttpGrant {
        HttpGrant {
            allow: vec![
                Allowlist {
                    whose: "the step's `allow_http`",
                    patterns: step,
                },
                Allowlist {
                    whose: "the tenant's egress allowlist (PUT /v1/tenants/{tenant}/egress)",
                    patterns: tenant.to_vec(),
                },
                Allowlist {
                    whose: "the server's `step-http-allow`",
                    patterns: self.allow.clone(),
                },
            ],
            max_requests: caps.max_requests,
            max_response_bytes: caps.max_response_bytes,
            max_concurrent: caps.max_concurrent,
        }
    }
}

/// One request a step made (or tried to), as its attempt records it: no
/// path, headers or bodies, which may carry secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HttpRequestRecord {
    /// The method (`GET`).
    pub method: String,
    /// The host and port asked for (`api.example.com:443`).
    pub host: String,
    /// The response's status; absent when there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why there was no response, or why reading it stopped: `denied: …`
    /// (not allowed, or over a cap), `refused: …` (a forbidden address),
    /// or the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Response body bytes the step read.
    pub bytes: u64,
    /// From sending to the end of the response (or of the failure), in
    /// milliseconds.
    pub duration_ms: u64,
}

impl HttpRequestRecord {
    /// The duration as a [`Duration`].
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn patterns_match_hosts_and_ports() {
        let cases: &[(&str, &str, u16, bool)] = &[
            ("api.example.com", "api.example.com", 443, true),
            ("api.example.com", "api.example.com", 8080, true),
            ("API.Example.com.", "api.example.com.", 80, true),
            ("api.example.com", "example.com", 443, false),
            ("api.example.com", "xapi.example.com", 443, false),
            ("api.example.com:443", "api.example.com", 443, true),
            ("api.example.com:443", "api.example.com", 80, false),
            ("*.example.org", "a.example.org", 443, true),
            ("*.example.org", "a.b.example.org", 80, true),
            ("*.example.org", "example.org", 443, false),
            ("*.example.org", "badexample.org", 443, false),
            ("*.example.org", ".example.org", 443, false),
            ("*.example.org:443", "a.example.org", 80, false),
            ("*", "anything.test", 1, true),
            ("*:8080", "anything.test", 8080, true),
            ("*:8080", "anything.test", 80, false),
            ("127.0.0.1:9000", "127.0.0.1", 9000, true),
            ("127.0.0.1", "127.0.0.2", 9000, false),
            ("127.0.0.1", "localhost", 9000, false),
            ("[::1]:80", "[::1]", 80, true),
            ("[2001:DB8::1]", "[2001:db8:0::1]", 443, true),
            ("10.0.0.1", "[::ffff:10.0.0.1]", 80, false),
        ];
        for &(pattern, host, port, expected) in cases {
            assert_eq!(
                p(pattern).matches(host, port),
                expected,
                "{pattern} vs {host}:{port}"
            );
        }
    }

    #[test]
    fn patterns_print_as_they_parse() {
        for s in [
            "api.example.com",
            "*.example.org:443",
            "*",
            "*:8080",
            "10.1.2.3:80",
            "[2001:db8::1]:443",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
        assert_eq!(p("API.Example.COM.").to_string(), "api.example.com");
        let json = serde_json::to_value(p("*.a.b:1")).unwrap();
        assert_eq!(json, "*.a.b:1");
        assert!(serde_json::from_value::<HostPattern>(serde_json::json!("a b")).is_err());
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("https://api.example.com", "without a scheme"),
            ("api.example.com/v1", "no path"),
            ("user@api.example.com", "no path, query, user"),
            ("api.example.com:0", "not a port"),
            ("api.example.com:99999", "not a port"),
            ("api.example.com:http", "not a port"),
            ("a*.example.com", "`*` may only"),
            ("*.*.example.com", "may not appear"),
            ("api..example.com", "empty label"),
            ("-api.example.com", "hyphen"),
            ("api_x.example.com", "`_` may not appear"),
            ("::1", "in brackets"),
            ("[::1", "closing"),
            ("[::1]x", "only `:port`"),
            ("[zz::1]", "not an IPv6"),
            ("127.1", "not an IPv4"),
            ("0177.0.0.1", "not an IPv4"),
            ("ünïcode.example", "xn--"),
        ];
        for &(text, needle) in cases {
            let err = text.parse::<HostPattern>().expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(long.parse::<HostPattern>().is_err());
    }

    #[test]
    fn every_list_of_a_grant_must_allow() {
        let list = |whose, ps: &[&str]| Allowlist {
            whose,
            patterns: ps.iter().map(|s| p(s)).collect(),
        };
        let grant = HttpGrant {
            allow: vec![
                list(
                    "the step's `allow_http`",
                    &["api.example.com", "*.example.org"],
                ),
                list(
                    "the tenant's egress allowlist",
                    &["*.example.org", "api.example.com:443"],
                ),
                list("the server's `step-http-allow`", &["*"]),
            ],
            max_requests: 1,
            max_response_bytes: 1,
            max_concurrent: 1,
        };
        assert_eq!(grant.refusing("api.example.com", 443), None);
        assert_eq!(grant.refusing("x.example.org", 80), None);
        assert_eq!(
            grant.refusing("api.example.com", 80).unwrap().whose,
            "the tenant's egress allowlist"
        );
        assert_eq!(
            grant.refusing("other.test", 443).unwrap().whose,
            "the step's `allow_http`"
        );
        let empty = Allowlist {
            whose: "x",
            patterns: vec![],
        };
        assert!(!empty.allows("a", 1));
        assert_eq!(
            parse_patterns(&["a.b".into(), "bad host".into(), "*".into(), "".into()])
                .unwrap_err()
                .iter()
                .map(|(i, _)| *i)
                .collect::<Vec<_>>(),
            vec![1, 3]
        );
    }
}

//! The HTTP side of the client: one request helper, and the one place that
//! turns the server's refusals and an unreachable server into messages.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Conn;

/// Why a client command stopped early.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    /// No HTTP answer at all.
    #[error("cannot reach the server at {server}: {}", causes(.source))]
    Unreachable { server: Url, source: reqwest::Error },
    /// The server answered with an error status.
    #[error("{0}")]
    Api(Refusal),
    /// Anything else: a file that cannot be read, an answer that makes no
    /// sense.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Turns the server's refusals and an unreachable server into a message on
/// stderr and exit code 1; other errors go up to `main`.
pub(super) fn finish(result: Result<ExitCode, Error>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(code) => Ok(code),
        Err(e @ (Error::Unreachable { .. } | Error::Api(_))) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(Error::Other(e)) => Err(e),
    }
}

/// The error's causes, without reqwest's own "error sending request"
/// wrapper, which repeats the URL.
fn causes(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// An error answer: its status and the problem document's content.
#[derive(Debug)]
pub(super) struct Refusal {
    status: StatusCode,
    problem: Problem,
    /// Whether the request carried no token, to hint at `--token` on 401.
    anonymous: bool,
}

/// The parts of an RFC 9457 problem document the client shows.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    detail: String,
    #[serde(default)]
    errors: Vec<ProblemItem>,
}

/// One problem with its JSON path.
#[derive(Debug, Deserialize)]
struct ProblemItem {
    path: String,
    message: String,
}

impl Problem {
    /// Reads a problem document, or makes one of whatever else came back
    /// (a proxy's HTML page, say), cut short.
    fn from_body(status: StatusCode, body: &[u8]) -> Self {
        if let Ok(problem) = serde_json::from_slice::<Problem>(body)
            && !problem.detail.is_empty()
        {
            return problem;
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let detail = if text.is_empty() {
            status.canonical_reason().unwrap_or("no details").to_owned()
        } else {
            text.chars().take(500).collect()
        };
        Self {
            detail,
            errors: Vec::new(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.problem.detail)?;
        for item in &self.problem.errors {
            write!(f, "\n  {}: {}", item.path, item.message)?;
        }
        if self.status == StatusCode::UNAUTHORIZED && self.anonymous {
            write!(f, "\n  hint: pass --token or set STEPHOST_TOKEN")?;
        }
        Ok(())
    }
}

/// A successful answer: its status and JSON body.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    body: Value,
}

impl Answer {
    /// Reads the body as `T`; `what` names it in the error.
    pub(super) fn parse<T: DeserializeOwned>(&self, what: &str) -> Result<T, Error> {
        T::deserialize(&self.body)
            .with_context(|| format!("the server's answer is not {what}"))
            .map_err(Error::Other)
    }

    /// Prints the body as the server sent it, indented.
    pub(super) fn print_json(&self) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(&self.body).context("cannot print the answer")?;
        println!("{text}");
        Ok(())
    }
}

/// An HTTP client bound to one server and token.
#[derive(Debug)]
pub(super) struct Client<'a> {
    http: reqwest::Client,
    conn: &'a Conn,
}

impl<'a> Client<'a> {
    pub(super) fn new(conn: &'a Conn) -> Result<Self, Error> {
        // No overall timeout: a synchronous run or a long poll legitimately
        // waits as long as the user asked; the server caps the wait.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("stephost/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self { http, conn })
    }

    /// A request to the server's base URL followed by `segments`, each
    /// percent-encoded as one path segment.
    pub(super) fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.conn.server.clone();
        // `parse_server` accepts only URLs that can be a base, so this
        // always succeeds.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        let req = self.http.request(method, url);
        match &self.conn.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends a request; a non-2xx answer becomes [`Error::Api`].
    pub(super) async fn send(&self, req: RequestBuilder) -> Result<Answer, Error> {
        let unreachable = |source| Error::Unreachable {
            server: self.conn.server.clone(),
            source,
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(Error::Api(Refusal {
                status,
                problem: Problem::from_body(status, &bytes),
                anonymous: self.conn.token.is_none(),
            }));
        }
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).with_context(|| {
                format!("the server answered {status} with a body that is not JSON")
            })?
        };
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_lists_every_problem_and_hints_at_the_token() {
        let body = br#"{"detail":"the workflow definition is invalid","errors":[{"path":"$.steps[0].step","message":"no step named `x` is registered"}]}"#;
        let refusal = Refusal {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            problem: Problem::from_body(StatusCode::UNPROCESSABLE_ENTITY, body),
            anonymous: true,
        };
        assert_eq!(
            refusal.to_string(),
            "422 Unprocessable Entity: the workflow definition is invalid\n  $.steps[0].step: no step named `x` is registered"
        );
        let refusal = Refusal {
            status: StatusCode::UNAUTHORIZED,
            problem: Problem::from_body(StatusCode::UNAUTHORIZED, b"<html>nope</html>"),
            anonymous: true,
        };
        assert!(
            refusal
                .to_string()
                .ends_with("<html>nope</html>\n  hint: pass --token or set STEPHOST_TOKEN")
        );
    }
}

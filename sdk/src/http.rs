//! HTTP requests from a step, over `wasi:http/outgoing-handler`.
//!
//! A step reaches only the hosts its workflow step lists in `allow_http`
//! (and that its tenant's egress allowlist and the server allow); any
//! other request fails with the code `HttpRequestDenied`, and the
//! attempt's log says why. Requests count against the attempt's caps
//! (`limits.http_requests`, `http_response_bytes`, `http_concurrent`) and
//! its time limit.
//!
//! ```no_run
//! use stephost_sdk::http;
//!
//! # fn demo() -> Result<(), http::HttpError> {
//! let response = http::get("https://api.example.com/v1/rates")?;
//! if response.status == 200 {
//!     let rates: serde_json::Value = response.json()?;
//! }
//! let created = http::Request::post("https://api.example.com/v1/orders")
//!     .header("content-type", "application/json")
//!     .body(br#"{"sku": "a-1"}"#.to_vec())
//!     .send()?;
//! # Ok(()) }
//! ```
//!
//! Requests block the step until they are answered. To have several open
//! at once, [`Request::start`] them and then [`Pending::wait`] for each.
//! Outside the sandbox every request fails with the code `Unavailable`.

use std::fmt;

/// Why a request got no response: the `wasi:http` error code's name
/// (`HttpRequestDenied`, `ConnectionRefused`, `ConnectionLimitReached`,
/// ...) and what is known of it. A body that fails while it is read is
/// `HttpResponseIncomplete` with the host's reason as the message (over
/// the attempt's `http_response_bytes`: `HTTP response body size exceeds
/// limit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The error code, as `wasi:http/types.error-code` names it in
    /// UpperCamelCase.
    pub code: String,
    /// A description.
    pub message: String,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for crate::StepError {
    /// A retryable `http_error` step error, except for a denied request
    /// (retrying cannot help), which is fatal with the code `http_denied`.
    fn from(e: HttpError) -> Self {
        if e.code == "HttpRequestDenied" {
            crate::StepError::fatal("http_denied", e.to_string())
        } else {
            crate::StepError::retryable("http_error", e.to_string())
        }
    }
}

fn error(code: &str, message: impl Into<String>) -> HttpError {
    HttpError {
        code: code.to_owned(),
        message: message.into(),
    }
}

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method: `GET`, `POST`, ...
    pub method: String,
    /// The URL: `http://` or `https://`, a host, an optional port, path
    /// and query.
    pub url: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
}

impl Request {
    /// A request with `method` to `url`, without headers or body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the request and waits for the whole response.
    pub fn send(&self) -> Result<Response, HttpError> {
        self.start()?.wait()
    }

    /// Sends the request without waiting: several may be open at once
    /// (up to the attempt's `http_concurrent`).
    pub fn start(&self) -> Result<Pending, HttpError> {
        imp::start(self)
    }
}

/// A response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in order, names in lowercase.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| error("InvalidJson", format!("the response body is not JSON: {e}")))
    }
}

/// A request sent, its response still to come.
pub struct Pending {
    #[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
    future: wasip2::http::types::FutureIncomingResponse,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl Pending {
    /// Waits for the response and reads its body.
    pub fn wait(self) -> Result<Response, HttpError> {
        imp::wait(self)
    }
}

/// Sends a `GET` request to `url` and waits for the whole response.
pub fn get(url: &str) -> Result<Response, HttpError> {
    Request::get(url).send()
}

/// A URL split as `wasi:http` wants it.
#[derive(Debug, PartialEq, Eq)]
struct Parts<'a> {
    scheme: &'a str,
    authority: &'a str,
    path_with_query: String,
}

fn split(url: &str) -> Result<Parts<'_>, HttpError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| error("HttpRequestUriInvalid", format!("`{url}` has no scheme")))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return Err(error(
            "HttpRequestUriInvalid",
            format!("`{url}` has no host"),
        ));
    }
    // The fragment stays with the client.
    let tail = tail.split('#').next().unwrap_or_default();
    Ok(Parts {
        scheme,
        authority,
        path_with_query: if tail.starts_with('/') {
            tail.to_owned()
        } else {
            format!("/{tail}")
        },
    })
}

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod imp {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasip2::io::streams::StreamError;

    use super::{HttpError, Pending, Request, Response, error, split};

    /// The error code's variant name (`HttpRequestDenied`) and its text.
    fn code_error(code: &ErrorCode) -> HttpError {
        let debug = format!("{code:?}");
        let name = debug
            .strip_prefix("ErrorCode::")
            .unwrap_or(&debug)
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_owned();
        HttpError {
            code: name,
            message: debug,
        }
    }

    pub(super) fn start(req: &Request) -> Result<Pending, HttpError> {
        let parts = split(&req.url)?;
        let list: Vec<(String, Vec<u8>)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        let headers = Fields::from_list(&list)
            .map_err(|e| error("HttpRequestHeaderInvalid", format!("{e:?}")))?;
        let request = OutgoingRequest::new(headers);
        let method = match req.method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_owned()),
        };
        let invalid = |what: &str| error("HttpRequestUriInvalid", format!("invalid {what}"));
        request
            .set_method(&method)
            .map_err(|()| error("HttpRequestMethodInvalid", req.method.clone()))?;
        let scheme = match parts.scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => Scheme::Other(other.to_owned()),
        };
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(parts.authority))
            .map_err(|()| invalid("host"))?;
        request
            .set_path_with_query(Some(&parts.path_with_query))
            .map_err(|()| invalid("path"))?;
        let body = request
            .body()
            .map_err(|()| error("InternalError", "the request body was taken"))?;
        let future = outgoing_handler::handle(request, None).map_err(|e| code_error(&e))?;
        // The body is written after the request is handed over: the host
        // reads it as it comes.
        {
            let out = body
                .write()
                .map_err(|()| error("InternalError", "the request body stream was taken"))?;
            for chunk in req.body.chunks(4096) {
                out.blocking_write_and_flush(chunk).map_err(|e| {
                    error(
                        "HttpRequestBodySize",
                        format!("writing the body failed: {e:?}"),
                    )
                })?;
            }
        }
        OutgoingBody::finish(body, None).map_err(|e| code_error(&e))?;
        Ok(Pending { future })
    }

    pub(super) fn wait(pending: Pending) -> Result<Response, HttpError> {
        let future = pending.future;
        let response = loop {
            match future.get() {
                Some(Ok(Ok(response))) => break response,
                Some(Ok(Err(code))) => return Err(code_error(&code)),
                Some(Err(())) => return Err(error("InternalError", "the response was taken")),
                None => future.subscribe().block(),
            }
        };
        let status = response.status();
        let headers = response.headers().entries();
        let body = response
            .consume()
            .map_err(|()| error("InternalError", "the response body was taken"))?;
        let mut bytes = Vec::new();
        {
            let stream = body
                .stream()
                .map_err(|()| error("InternalError", "the response body stream was taken"))?;
            loop {
                match stream.blocking_read(64 << 10) {
                    Ok(chunk) => bytes.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        let code = wasip2::http::types::http_error_code(&e);
                        return Err(match code {
                            Some(code) => code_error(&code),
                            None => error("HttpResponseIncomplete", e.to_debug_string()),
                        });
                    }
                }
            }
        }
        let _trailers = IncomingBody::finish(body);
        Ok(Response {
            status,
            headers,
            body: bytes,
        })
    }
}

#[cfg(not(all(target_arch = "wasm32", target_os = "wasi")))]
mod imp {
    use super::{HttpError, Pending, Request, Response, error, split};

    pub(super) fn start(req: &Request) -> Result<Pending, HttpError> {
        split(&req.url)?;
        Err(error(
            "Unavailable",
            "HTTP requests are only sent inside the stephost sandbox",
        ))
    }

    pub(super) fn wait(_pending: Pending) -> Result<Response, HttpError> {
        Err(error(
            "Unavailable",
            "HTTP requests are only sent inside the stephost sandbox",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        assert_eq!(
            split("https://api.example.com:8443/v1/x?a=1#frag").unwrap(),
            Parts {
                scheme: "https",
                authority: "api.example.com:8443",
                path_with_query: "/v1/x?a=1".into()
            }
        );
        assert_eq!(split("http://h").unwrap().path_with_query, "/");
        assert_eq!(split("http://h?q=1").unwrap().path_with_query, "/?q=1");
        assert_eq!(split("h/x").unwrap_err().code, "HttpRequestUriInvalid");
        assert_eq!(
            split("http:///x").unwrap_err().code,
            "HttpRequestUriInvalid"
        );
    }

    #[test]
    fn outside_the_sandbox_requests_fail_plainly() {
        let e = get("https://example.com/").unwrap_err();
        assert_eq!(e.code, "Unavailable");
        let step: crate::StepError = e.into();
        assert_eq!(step.code, "http_error");
        let denied: crate::StepError = error("HttpRequestDenied", "no").into();
        assert_eq!(denied.code, "http_denied");
        assert!(!denied.retryable);
    }
}

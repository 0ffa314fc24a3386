//! `wasi:http` for steps. Components that import it (a default
//! componentize-js build does) always instantiate. A request goes out only
//! when the attempt holds an [`HttpGrant`] whose every allowlist allows the
//! host, and only through the one outbound layer ([`Outbound`]), which
//! refuses loopback, private and metadata addresses whatever the lists say.
//! Everything else is answered with an error code (`HTTP-request-denied`
//! for a host that is not allowed), never a trap.
//!
//! The attempt's caps hold here: the most requests, the most response
//! bytes (all requests together) and the most requests open at once. The
//! attempt's wall-clock limit covers the time spent in HTTP: the requests
//! are tasks of the attempt's store, dropped with it.
//!
//! Each request is logged with its URL (secret values redacted, as in
//! every log line) and recorded on the attempt ([`HttpRequestRecord`]:
//! method, host, status, bytes, duration; no path, headers or bodies).
//! The log says why a request was denied: a guest language may turn the
//! error code into a generic message (JavaScript's `fetch` rejects with
//! "NetworkError"), and the author should still learn why.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::logs::AttemptLog;
use crate::model::{HttpGrant, HttpRequestRecord, LogLevel, LogSource};
use crate::outbound::{Failure, Outbound};

/// The largest request body a step may send, in bytes: the body is read
/// whole before the request goes out.
pub(crate) const MAX_REQUEST_BODY_BYTES: usize = 16 << 20;

/// What an attempt may reach: the grant, and the client to reach it with.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub(crate) outbound: Outbound,
    pub(crate) grant: HttpGrant,
}

/// What the attempt's requests did, shared by the hooks and the response
/// bodies they hand out.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    records: Mutex<Vec<HttpRequestRecord>>,
    /// Requests asked for, allowed or not.
    asked: AtomicU32,
    /// Response body bytes read, all requests together.
    read: AtomicU64,
}

impl Traffic {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<HttpRequestRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a request, up to `bound` records; its index, if kept.
    fn record(&self, record: HttpRequestRecord, bound: usize) -> Option<usize> {
        let mut records = self.lock();
        (records.len() < bound).then(|| {
            records.push(record);
            records.len() - 1
        })
    }

    fn update(&self, index: Option<usize>, f: impl FnOnce(&mut HttpRequestRecord)) {
        let Some(i) = index else { return };
        if let Some(record) = self.lock().get_mut(i) {
            f(record);
        }
    }

    /// The records so far.
    pub(crate) fn records(&self) -> Vec<HttpRequestRecord> {
        self.lock().clone()
    }
}

/// Records kept past the request cap, for the requests denied by it.
const EXTRA_RECORDS: usize = 16;

/// The `wasi:http` hooks of one attempt.
#[derive(Debug)]
pub(crate) struct StepHttp {
    log: AttemptLog,
    access: Option<Access>,
    traffic: Arc<Traffic>,
    open: Arc<Semaphore>,
}

impl StepHttp {
    /// Hooks that send what `access` allows; `None` denies every request.
    pub(crate) fn new(log: AttemptLog, access: Option<Access>) -> Self {
        let permits = access
            .as_ref()
            .map_or(0, |a| a.grant.max_concurrent as usize);
        Self {
            log,
            access,
            traffic: Arc::default(),
            open: Arc::new(Semaphore::new(permits)),
        }
    }

    /// What the requests did, to read after the attempt.
    pub(crate) fn traffic(&self) -> Arc<Traffic> {
        self.traffic.clone()
    }

    fn bound(&self) -> usize {
        self.access
            .as_ref()
            .map_or(0, |a| a.grant.max_requests as usize)
            + EXTRA_RECORDS
    }

    /// Logs and records a request that is not sent, and answers `code`.
    fn deny(
        &self,
        method: &str,
        shown: &str,
        host: String,
        why: &str,
        code: HttpError,
    ) -> ResponseFuture {
        let name = code_name(&code);
        self.log.push(
            LogLevel::Warn,
            LogSource::Host,
            &format!("outbound HTTP request {method} {shown} denied ({name}): {why}"),
        );
        self.traffic.record(
            HttpRequestRecord {
                method: method.to_owned(),
                host,
                status: None,
                error: Some(format!("denied: {why}")),
                bytes: 0,
                duration_ms: 0,
            },
            self.bound(),
        );
        Box::new(async move { Err(code) })
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

/// The error code's name in the WIT (`HTTP-request-denied`), for logs.
fn code_name(code: &HttpError) -> &'static str {
    match code {
        HttpError::HttpRequestDenied => "HTTP-request-denied",
        HttpError::ConnectionLimitReached => "connection-limit-reached",
        HttpError::HttpRequestUriInvalid => "HTTP-request-URI-invalid",
        HttpError::HttpRequestBodySize(_) => "HTTP-request-body-size",
        HttpError::HttpResponseBodySize(_) => "HTTP-response-body-size",
        HttpError::HttpResponseTimeout => "HTTP-response-timeout",
        HttpError::ConnectionTimeout => "connection-timeout",
        HttpError::ConnectionRefused => "connection-refused",
        _ => "HTTP-protocol-error",
    }
}

/// The error code a failure of the outbound layer gives the guest.
fn code_of(failure: &Failure) -> HttpError {
    match failure {
        Failure::Refused(_) => HttpError::HttpRequestDenied,
        Failure::Timeout(_) => HttpError::ConnectionTimeout,
        Failure::Unreachable(_) => HttpError::ConnectionRefused,
        Failure::Failed(_) => HttpError::HttpProtocolError,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl WasiHttpHooks for StepHttp {
    // The outbound client writes `Host` from the URL it connects to; a
    // header from the guest would only disagree with it.
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> ResponseFuture {
        let method = request.method().as_str().to_owned();
        // The URL as the outbound layer will see it: the parser normalises
        // the host (`0x7f000001` is `127.0.0.1`), so the lists are matched
        // against what is connected to.
        let url = match url::Url::parse(&request.uri().to_string()) {
            Ok(url) => url,
            Err(e) => {
                let shown = request.uri().to_string();
                let host = request
                    .uri()
                    .authority()
                    .map_or(String::new(), |a| a.to_string());
                return self.deny(
                    &method,
                    &shown,
                    host,
                    &format!("the URL is not valid: {e}"),
                    HttpError::HttpRequestUriInvalid,
                );
            }
        };
        let shown = url.as_str().to_owned();
        let host_name = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(0);
        let host = format!("{host_name}:{port}");
        let Some(access) = self.access.clone() else {
            return self.deny(
                &method,
                &shown,
                host,
                "steps have no network access unless their definition lists the host in \
                 `allow_http`",
                HttpError::HttpRequestDenied,
            );
        };
        let grant = &access.grant;
        let asked = self.traffic.asked.fetch_add(1, Ordering::Relaxed) + 1;
        if asked > grant.max_requests {
            return self.deny(
                &method,
                &shown,
                host,
                &format!(
                    "the attempt may make {} requests (`http_requests`)",
                    grant.max_requests
                ),
                HttpError::HttpRequestDenied,
            );
        }
        if let Some(list) = grant.refusing(&host_name, port) {
            return self.deny(
                &method,
                &shown,
                host.clone(),
                &format!("{host} is not in {}", list.whose),
                HttpError::HttpRequestDenied,
            );
        }
        let Ok(permit) = self.open.clone().try_acquire_owned() else {
            return self.deny(
                &method,
                &shown,
                host,
                &format!(
                    "the attempt may have {} requests open at once (`http_concurrent`); read \
                     or drop a response first",
                    grant.max_concurrent
                ),
                HttpError::ConnectionLimitReached,
            );
        };
        let index = self.traffic.record(
            HttpRequestRecord {
                method: method.clone(),
                host,
                status: None,
                error: None,
                bytes: 0,
                duration_ms: 0,
            },
            self.bound(),
        );
        let log = self.log.clone();
        let traffic = self.traffic.clone();
        let max_read = grant.max_response_bytes;
        let first_byte = options.and_then(|o| o.first_byte_timeout);
        Box::new(async move {
            let started = Instant::now();
            let fail = |why: String, code: HttpError| {
                log.push(
                    LogLevel::Warn,
                    LogSource::Host,
                    &format!(
                        "outbound HTTP request {method} {shown} failed ({}): {why}",
                        code_name(&code)
                    ),
                );
                traffic.update(index, |r| {
                    r.error = Some(why);
                    r.duration_ms = millis(started.elapsed());
                });
                Err(code)
            };
            let (parts, body) = request.into_parts();
            let body = match http_body_util::Limited::new(body, MAX_REQUEST_BODY_BYTES)
                .collect()
                .await
            {
                Ok(body) => body.to_bytes(),
                Err(e) => {
                    return if e.is::<http_body_util::LengthLimitError>() {
                        fail(
                            format!("the request body is over {MAX_REQUEST_BODY_BYTES} bytes"),
                            HttpError::HttpRequestBodySize(None),
                        )
                    } else {
                        fail(
                            format!("reading the request body failed: {e}"),
                            HttpError::HttpProtocolError,
                        )
                    };
                }
            };
            let method_v = parts.method;
            let sent = access.outbound.open(method_v, url, parts.headers, body);
            let answer = match first_byte {
                Some(limit) => match tokio::time::timeout(limit, sent).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        return fail(
                            format!("no response within {limit:?} (`first-byte-timeout`)"),
                            HttpError::HttpResponseTimeout,
                        );
                    }
                },
                None => sent.await,
            };
            let answer = match answer {
                Ok(answer) => answer,
                Err(failure) => {
                    let why = match &failure {
                        Failure::Refused(r) => format!("refused: {r}"),
                        other => other.to_string(),
                    };
                    return fail(why, code_of(&failure));
                }
            };
            let status = answer.status().as_u16();
            let head = started.elapsed();
            traffic.update(index, |r| {
                r.status = Some(status);
                r.duration_ms = millis(head);
            });
            log.push(
                LogLevel::Info,
                LogSource::Host,
                &format!(
                    "outbound HTTP request {method} {shown}: {status} in {} ms",
                    millis(head)
                ),
            );
            let answer: http::Response<reqwest::Body> = answer.into();
            let (parts, body) = answer.into_parts();
            let body = Metered {
                inner: body,
                traffic,
                index,
                started,
                max_read,
                done: false,
                permit: Some(permit),
            };
            Ok((
                http::Response::from_parts(parts, body.boxed_unsync()),
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// A response body as the guest reads it: its bytes counted against the
/// attempt's cap and onto the request's record, and the request's slot
/// among the open ones held until it ends, fails or is dropped.
struct Metered {
    inner: reqwest::Body,
    traffic: Arc<Traffic>,
    index: Option<usize>,
    started: Instant,
    max_read: u64,
    done: bool,
    permit: Option<OwnedSemaphorePermit>,
}

impl Metered {
    fn end(&mut self, error: Option<String>) {
        if self.done {
            return;
        }
        self.done = true;
        self.permit = None;
        let elapsed = millis(self.started.elapsed());
        self.traffic.update(self.index, |r| {
            r.duration_ms = elapsed;
            if error.is_some() {
                r.error = error;
            }
        });
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.end(None);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(Some(format!("reading the response failed: {e}")));
                Poll::Ready(Some(Err(HttpError::HttpResponseIncomplete)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                let total = this.traffic.read.fetch_add(len, Ordering::Relaxed) + len;
                if total > this.max_read {
                    let cap = this.max_read;
                    this.end(Some(format!(
                        "denied: the attempt may read {cap} response bytes (`http_response_bytes`)"
                    )));
                    return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(cap)))));
                }
                this.traffic.update(this.index, |r| r.bytes += len);
                // The reader may stop at the last frame without asking for
                // the end: the request is over now.
                if this.inner.is_end_stream() {
                    this.end(None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.end(None);
    }
}

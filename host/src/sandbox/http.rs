//! `wasi:http` for steps: linked so that components importing it (a default
//! componentize-js build does) instantiate, but every outbound request is
//! denied. The guest sees an HTTP error (`HTTP-request-denied`), never a trap,
//! and the attempt's log says which request was denied: a guest language
//! may turn the error code into a generic message (JavaScript's `fetch`
//! rejects with "NetworkError"), and the author should still learn why.

use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use super::logs::AttemptLog;
use crate::model::{LogLevel, LogSource};

/// Hooks that refuse every outbound request, noting each in the log.
#[derive(Debug, Clone)]
pub(crate) struct DenyAllHttp {
    pub(crate) log: AttemptLog,
}

type ResponseFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for DenyAllHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> ResponseFuture {
        // The URI without its query, which may carry credentials.
        let uri = request.uri();
        let target = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map_or("", |a| a.as_str()),
            uri.path()
        );
        self.log.push(
            LogLevel::Warn,
            LogSource::Host,
            &format!(
                "outbound HTTP request {} {target} denied (HTTP-request-denied): steps have no \
                 network access",
                request.method()
            ),
        );
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

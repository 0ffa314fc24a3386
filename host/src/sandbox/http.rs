//! `wasi:http` for steps: linked so that components importing it (a default
//! componentize-js build does) instantiate, but every outbound request is
//! denied. The guest sees an HTTP error (`HTTP-request-denied`), never a trap.

use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// Hooks that refuse every outbound request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DenyAllHttp;

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
        _request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> ResponseFuture {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

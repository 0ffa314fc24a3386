//! The per-attempt store data: WASI context (deny by default), the
//! `wasi:http` hooks (deny unless granted), the memory meter and the step's
//! own imports.

use std::collections::BTreeMap;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::http::{Access, StepHttp};
use super::limits::MemoryMeter;
use super::logs::AttemptLog;
use crate::model::LogSource;

/// Everything a `Store` holds for one attempt. Built fresh for every
/// attempt and dropped with it, so nothing survives between attempts.
pub(crate) struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) http_hooks: StepHttp,
    table: ResourceTable,
    pub(crate) meter: MemoryMeter,
    pub(crate) step: StepHost,
}

/// The state behind the `stephost:step` imports (`log`, `config`).
#[derive(Debug)]
pub(crate) struct StepHost {
    pub(crate) log: AttemptLog,
    pub(crate) config: BTreeMap<String, String>,
}

impl State {
    pub(crate) fn new(
        log: AttemptLog,
        config: BTreeMap<String, String>,
        meter: MemoryMeter,
        http: Option<Access>,
    ) -> Self {
        // WASI 0.2, deny by default: no preopened directories, no
        // environment, no arguments, empty stdin and no network. Clocks and
        // random are the defaults of the builder.
        let wasi = WasiCtx::builder()
            .stdout(log.stream(LogSource::Stdout))
            .stderr(log.stream(LogSource::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            http_hooks: StepHttp::new(log.clone(), http),
            table: ResourceTable::new(),
            meter,
            step: StepHost { log, config },
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

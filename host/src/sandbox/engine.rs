//! The process-wide wasmtime [`Engine`] and the epoch ticker that drives
//! wall-clock limits.
//!
//! Everything about how untrusted code is compiled and allocated is decided
//! here, once. Proposals that a multi-tenant host should not expose are off:
//! threads and shared memory, GC, exceptions, memory64 and component-model
//! async. Winch is not compiled in; only Cranelift is.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Strategy,
    WasmFeatures,
};

use super::{Error, Limits};

/// How often the epoch advances. Wall-clock limits are enforced to within
/// one tick, and a running guest yields to the async executor once a tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest wasm stack any guest may use.
pub const MAX_WASM_STACK: usize = 1 << 20;

/// Sizing of the pooling allocator.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// How many attempts may hold an instance at the same time.
    pub max_concurrent_instances: u32,
}

impl Default for PoolSize {
    fn default() -> Self {
        Self {
            max_concurrent_instances: 64,
        }
    }
}

/// Builds the engine. `ceiling` bounds the size of every memory slot.
pub(crate) fn build(ceiling: &Limits, pool: PoolSize) -> Result<Engine, Error> {
    let n = pool.max_concurrent_instances.max(1);
    let mut p = PoolingAllocationConfig::new();
    p.total_component_instances(n)
        // Interpreted-language components (componentize-py, componentize-js)
        // carry a dozen or more core instances, memories and tables each.
        .max_core_instances_per_component(64)
        .max_memories_per_component(16)
        .max_tables_per_component(64)
        .max_memories_per_module(1)
        .max_tables_per_module(8)
        .total_core_instances(n * 32)
        .total_memories(n * 4)
        .total_tables(n * 32)
        .total_stacks(n)
        .table_elements(200_000)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(1 << 20)
        .max_memory_size(usize::try_from(ceiling.memory_bytes).unwrap_or(usize::MAX))
        // Keeping a little of each slot resident avoids page faults on the
        // hot path of small steps without holding on to large heaps.
        .linear_memory_keep_resident(64 << 10)
        .table_keep_resident(16 << 10);

    let mut c = Config::new();
    c.strategy(Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(MAX_WASM_STACK + (512 << 10))
        .memory_init_cow(true)
        .wasm_backtrace_max_frames(NonZeroUsize::new(64))
        .parallel_compilation(true)
        .wasm_component_model(true)
        .wasm_features(WasmFeatures::THREADS, false)
        .wasm_memory64(false)
        .wasm_gc(false)
        .wasm_features(WasmFeatures::SHARED_EVERYTHING_THREADS, false)
        .wasm_features(WasmFeatures::EXCEPTIONS, false)
        .wasm_features(WasmFeatures::LEGACY_EXCEPTIONS, false)
        .wasm_features(WasmFeatures::STACK_SWITCHING, false)
        .wasm_features(WasmFeatures::CM_ASYNC, false)
        .wasm_features(WasmFeatures::CM_THREADING, false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    Engine::new(&c).map_err(Error::Engine)
}

/// A background thread that advances the engine's epoch every
/// [`EPOCH_TICK`]. It stops when dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("stephost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

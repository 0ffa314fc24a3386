//! The step sandbox: the only module that knows wasmtime.
//!
//! Its public face is small. [`Sandbox::prepare`] validates and precompiles a
//! component once; [`Sandbox::run`] runs one attempt of a prepared step with
//! an input, under [`Limits`], with its configuration, and returns an
//! [`AttemptReport`]: the outcome plus metering and logs. A misbehaving guest
//! is always an outcome, never an `Err`; `Err` is reserved for problems of the
//! caller or the host.
//!
//! It must not know about workflows, tenants, storage or HTTP.

mod bindings;
mod cache;
mod engine;
mod http;
mod imports;
mod limits;
mod logs;
mod run;
mod state;
mod validate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::Linker;

pub use self::cache::Source;
pub use self::engine::{MAX_WASM_STACK, PoolSize};
pub use self::run::Cancel;
use self::state::State;
use crate::model::Digest;
pub use crate::model::{
    AboveCeiling, AttemptReport, Capabilities, Limits, Outcome, Overrides, REDACTED, Redactor,
};

/// Errors of the caller or the host. A guest misbehaving is never one of
/// these: it is an [`Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a WebAssembly component.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component is well-formed but does not fit the step world.
    #[error("invalid step component: {0}")]
    Invalid(String),
    /// The input is larger than the attempt's limit.
    #[error("the input is {size} bytes, over the limit of {limit} bytes")]
    InputTooLarge {
        /// Input size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Every instance slot is in use.
    #[error("no instance slot is free; too many attempts are running at once")]
    AtCapacity(#[source] wasmtime::Error),
    /// The engine could not be configured.
    #[error("configuring the wasm engine failed")]
    Engine(#[source] wasmtime::Error),
    /// Reading or writing the precompiled-artifact cache failed.
    #[error("component cache I/O failed at {path}")]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An unexpected wasmtime failure that is not the guest's doing.
    #[error("internal sandbox error")]
    Internal(#[source] wasmtime::Error),
}

/// How a [`Sandbox`] is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where precompiled artifacts are kept; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// The most bytes of artifacts `cache_dir` holds: past it, the least
    /// recently used ones are deleted (they are compiled again when next
    /// needed).
    pub cache_max_bytes: u64,
    /// The most prepared steps kept in memory: past it, the least recently
    /// used is dropped (preparing it again loads its artifact from
    /// `cache_dir`).
    pub max_prepared: usize,
    /// The most bytes of compiled code and data the prepared steps in
    /// memory may hold together ([`Prepared::image_bytes`]): past it, the
    /// least recently used are dropped likewise. The newest is kept even
    /// when it alone is larger.
    pub max_prepared_bytes: u64,
    /// The most functions a component may define (all its core modules
    /// together); a component with more is refused before it is compiled.
    pub max_functions: u64,
    /// The largest function body a component may have, in bytes; a larger
    /// one is refused before it is compiled.
    pub max_function_bytes: u64,
    /// The limits an attempt gets when its step does not lower them.
    pub defaults: Limits,
    /// The limits nothing may exceed.
    pub ceiling: Limits,
    /// Sizing of the instance pool.
    pub pool: PoolSize,
    /// The client steps' HTTP requests go out through; `None` denies them
    /// all, whatever an attempt was granted.
    pub outbound: Option<crate::outbound::Outbound>,
}

impl Settings {
    /// The default bound of the artifact cache: 4 GiB, room for dozens of
    /// interpreted-language components (tens of MiB of native code each)
    /// and thousands of compiled ones.
    pub const CACHE_MAX_BYTES: u64 = 4 << 30;
    /// The default bound of prepared steps in memory.
    pub const MAX_PREPARED: usize = 1_000;
    /// The default bound of prepared steps' images in memory: 2 GiB, about
    /// fifty interpreted-language components (CPython's is 40 MiB compiled)
    /// or thousands of compiled ones.
    pub const MAX_PREPARED_BYTES: u64 = 2 << 30;
    /// The default bound on functions per component: 100,000, about seven
    /// times what a componentize-py (CPython) or componentize-js
    /// (SpiderMonkey) component defines (13,355 and 12,695).
    pub const MAX_FUNCTIONS: u64 = 100_000;
    /// The default bound on one function body: 2 MiB, about five times the
    /// largest body in those components (CPython's interpreter loop,
    /// 426,843 bytes). Compiling a body just under it takes seconds.
    pub const MAX_FUNCTION_BYTES: u64 = 2 << 20;
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cache_dir: None,
            cache_max_bytes: Settings::CACHE_MAX_BYTES,
            max_prepared: Settings::MAX_PREPARED,
            max_prepared_bytes: Settings::MAX_PREPARED_BYTES,
            max_functions: Settings::MAX_FUNCTIONS,
            max_function_bytes: Settings::MAX_FUNCTION_BYTES,
            defaults: Limits::DEFAULT,
            ceiling: Limits::CEILING,
            pool: PoolSize::default(),
            outbound: None,
        }
    }
}

/// What is known about a component after validation.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Content digest.
    pub digest: Digest,
    /// Size of the component in bytes.
    pub size_bytes: u64,
    /// Everything it imports (empty when its shape was refused before
    /// compiling).
    pub imports: Vec<String>,
    /// Everything it exports (empty likewise).
    pub exports: Vec<String>,
    /// `Ok` when it is a valid step, otherwise the reason it is not.
    pub verdict: Result<(), String>,
}

/// A validated, precompiled step, ready to instantiate.
pub struct Prepared {
    /// Content digest.
    pub digest: Digest,
    /// Size of the component in bytes.
    pub size_bytes: u64,
    /// Everything it imports.
    pub imports: Vec<String>,
    /// Whether it was compiled now or loaded precompiled.
    pub source: Source,
    /// The bytes of compiled code and data it holds in memory.
    pub image_bytes: u64,
    /// Time spent compiling or loading.
    pub compile_time: Duration,
    pre: bindings::StepPre<State>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("digest", &self.digest)
            .field("size_bytes", &self.size_bytes)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The step sandbox. One per process: it owns the wasmtime engine, the linker,
/// the epoch ticker and the component caches.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<State>,
    cache: cache::Cache,
    settings: Settings,
    prepared: Mutex<PreparedSet>,
    /// One lock per digest being prepared, so that concurrent first runs of
    /// one component compile it once; the others wait and take the result.
    /// An entry lives only while someone prepares that digest.
    preparing: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    _ticker: engine::EpochTicker,
}

/// Prepared steps in memory, at most `max` of them holding at most
/// `max_bytes` of images; the least recently used goes first.
struct PreparedSet {
    entries: HashMap<Digest, (Arc<Prepared>, u64)>,
    uses: u64,
    max: usize,
    bytes: u64,
    max_bytes: u64,
}

impl PreparedSet {
    fn get(&mut self, digest: &Digest) -> Option<Arc<Prepared>> {
        self.uses += 1;
        let now = self.uses;
        self.entries.get_mut(digest).map(|(p, used)| {
            *used = now;
            p.clone()
        })
    }

    fn insert(&mut self, digest: Digest, prepared: Arc<Prepared>) {
        if let Some((old, _)) = self.entries.remove(&digest) {
            self.bytes -= old.image_bytes;
        }
        while !self.entries.is_empty()
            && (self.entries.len() >= self.max.max(1)
                || self.bytes + prepared.image_bytes > self.max_bytes)
        {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(d, _)| *d);
            if let Some((gone, _)) = oldest.and_then(|d| self.entries.remove(&d)) {
                self.bytes -= gone.image_bytes;
            }
        }
        self.uses += 1;
        self.bytes += prepared.image_bytes;
        self.entries.insert(digest, (prepared, self.uses));
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let engine = engine::build(&settings.ceiling, settings.pool)?;
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(Error::Engine)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(Error::Engine)?;
        bindings::Step::add_to_linker::<State, wasmtime::component::HasSelf<state::StepHost>>(
            &mut linker,
            |s| &mut s.step,
        )
        .map_err(Error::Engine)?;
        let cache = cache::Cache::new(
            &engine,
            settings.cache_dir.clone(),
            settings.cache_max_bytes,
        )?;
        let ticker = engine::EpochTicker::start(engine.clone());
        let (max_prepared, max_prepared_bytes) =
            (settings.max_prepared, settings.max_prepared_bytes);
        Ok(Self {
            engine,
            linker,
            cache,
            settings,
            prepared: Mutex::new(PreparedSet {
                entries: HashMap::new(),
                uses: 0,
                max: max_prepared,
                bytes: 0,
                max_bytes: max_prepared_bytes,
            }),
            preparing: Mutex::new(HashMap::new()),
            _ticker: ticker,
        })
    }

    /// The process-wide engine, for embedders and benchmarks that need to
    /// run something on exactly the same configuration.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The settings this sandbox was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Validates a component and precompiles it (or loads its precompiled
    /// artifact), keeping the result in memory. Calling it again with the
    /// same bytes returns the kept result.
    ///
    /// This is CPU-bound and may take seconds for large components; call it
    /// from a blocking context.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Arc<Prepared>, Error> {
        validate::check_header(bytes)?;
        let digest = Digest::of(bytes);
        if let Some(p) = self.lock_prepared().get(&digest) {
            return Ok(p);
        }
        let flight = self
            .preparing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(digest)
            .or_default()
            .clone();
        let result = {
            let _turn = flight.lock().unwrap_or_else(|e| e.into_inner());
            // Whoever held the turn before may have prepared it.
            let done = self.lock_prepared().get(&digest);
            match done {
                Some(p) => Ok(p),
                None => self.prepare_now(digest, bytes),
            }
        };
        let mut preparing = self.preparing.lock().unwrap_or_else(|e| e.into_inner());
        // The map's own reference and ours: nobody else waits on it. Ours
        // goes while the map is locked, so the last one out always sees 2.
        if Arc::strong_count(&flight) == 2 {
            preparing.remove(&digest);
        }
        drop(flight);
        drop(preparing);
        result
    }

    fn prepare_now(&self, digest: Digest, bytes: &[u8]) -> Result<Arc<Prepared>, Error> {
        validate::check_shape(bytes, self.shape_bounds())?;
        let (component, source, compile_time) =
            self.cache.load_or_compile(&self.engine, &digest, bytes)?;
        let imports = validate::imports(&component, &self.engine);
        validate::check_imports(&imports)?;
        validate::check_run_export(&component, &self.engine)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            Error::Invalid(format!(
                "the component cannot be linked: {}",
                cache::root_message(&e)
            ))
        })?;
        let pre = bindings::StepPre::new(pre).map_err(|e| {
            Error::Invalid(format!(
                "the component does not match the step world: {}",
                cache::root_message(&e)
            ))
        })?;
        // Only now, accepted, is its artifact worth keeping.
        if source == Source::Compiled {
            self.cache.keep(&digest, &component);
        }
        let image = component.image_range();
        let prepared = Arc::new(Prepared {
            digest,
            size_bytes: bytes.len() as u64,
            imports,
            source,
            image_bytes: (image.end as usize - image.start as usize) as u64,
            compile_time,
            pre,
        });
        self.lock_prepared().insert(digest, prepared.clone());
        Ok(prepared)
    }

    /// Validates a component without keeping it, and says what it imports
    /// and exports. Invalid components are reported in the verdict; only
    /// bytes that are not a component at all are an `Err`.
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspection, Error> {
        validate::check_header(bytes)?;
        let digest = Digest::of(bytes);
        if let Err(e) = validate::check_shape(bytes, self.shape_bounds()) {
            return Ok(Inspection {
                digest,
                size_bytes: bytes.len() as u64,
                imports: Vec::new(),
                exports: Vec::new(),
                verdict: Err(e.to_string()),
            });
        }
        let (component, _, _) = self.cache.load_or_compile(&self.engine, &digest, bytes)?;
        let imports = validate::imports(&component, &self.engine);
        let exports = validate::exports(&component, &self.engine);
        let verdict = validate::check_imports(&imports)
            .and_then(|()| validate::check_run_export(&component, &self.engine))
            .and_then(|()| {
                self.linker
                    .instantiate_pre(&component)
                    .map(|_| ())
                    .map_err(|e| Error::Invalid(cache::root_message(&e)))
            })
            .map_err(|e| e.to_string());
        Ok(Inspection {
            digest,
            size_bytes: bytes.len() as u64,
            imports,
            exports,
            verdict,
        })
    }

    /// The prepared step for `digest`, if this process holds it in memory.
    pub fn prepared(&self, digest: &Digest) -> Option<Arc<Prepared>> {
        self.lock_prepared().get(digest)
    }

    fn shape_bounds(&self) -> validate::ShapeBounds {
        validate::ShapeBounds {
            max_functions: self.settings.max_functions,
            max_function_bytes: self.settings.max_function_bytes,
            memory_ceiling: self.settings.ceiling.memory_bytes,
        }
    }

    fn lock_prepared(&self) -> std::sync::MutexGuard<'_, PreparedSet> {
        self.prepared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves per-step overrides against the defaults and the ceiling.
    pub fn limits(&self, overrides: &Overrides) -> Result<Limits, AboveCeiling> {
        self.settings
            .defaults
            .lowered(overrides, &self.settings.ceiling)
    }
}

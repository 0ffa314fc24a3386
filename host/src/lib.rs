//! stephost: a sandboxed workflow host whose every step is an isolated
//! WebAssembly component.
//!
//! Module map (see ARCHITECTURE.md): [`model`] holds plain domain types,
//! [`sandbox`] is the only module that knows wasmtime, [`store`] the only
//! one that knows SQL, [`engine`] drives executions, [`api`] is the only
//! module that knows HTTP, [`config`] reads configuration, [`secrets`] seals tenant secrets,
//! [`outbound`] is the one HTTP client that reaches out (refusing the host's own
//! networks), and
//! [`run`] wires
//! them together. [`cli`] is the command line of the `stephost` binary.

pub mod api;
pub mod authoring;
pub mod cli;
mod cli_client;
pub mod config;
pub mod engine;
pub mod model;
pub mod outbound;
pub mod runner;
pub mod sandbox;
pub mod secrets;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::store::Store;

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "stephost.db";

/// Where the server keeps its data, for messages: the PostgreSQL URL
/// without its password, or the SQLite file.
pub fn database_label(config: &Config) -> String {
    match &config.database {
        Some(url) => store::postgres::redact_url(url.expose()),
        None => config.data_dir.join(DATABASE_FILE).display().to_string(),
    }
}

/// Checks the settings that decide how this node shares work before
/// anything starts: a `database` must be a PostgreSQL URL, with one a
/// `secrets-key` must be set, without one `claim-work` must stay on, and
/// the lease and poll times must be sensible.
pub fn check_database(config: &Config) -> anyhow::Result<()> {
    let lease = config.lease_ttl.0;
    anyhow::ensure!(
        lease >= Duration::from_millis(500),
        "`lease-ttl` must be at least 500ms, not {lease:?}"
    );
    let poll = config.poll_interval.0;
    anyhow::ensure!(
        (Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&poll),
        "`poll-interval` must be between 10ms and 1h, not {poll:?}"
    );
    if postgres_url(config)?.is_none() {
        anyhow::ensure!(
            config.claim_work,
            "`claim-work = false` needs a PostgreSQL `database` shared with nodes that do \
             claim work: on the embedded SQLite database this server is the only one, so \
             nothing would ever run"
        );
        return Ok(());
    }
    anyhow::ensure!(
        config.secrets_key.is_some(),
        "with a PostgreSQL `database`, set `secrets-key` (STEPHOST_SECRETS_KEY): every server \
         sharing the database must seal and open tenant secrets with the same key, so none \
         is generated. Make one with: openssl rand -base64 32"
    );
    Ok(())
}

/// The configured PostgreSQL URL, refusing a `database` of another kind.
fn postgres_url(config: &Config) -> anyhow::Result<Option<&str>> {
    let Some(url) = &config.database else {
        return Ok(None);
    };
    let url = url.expose();
    anyhow::ensure!(
        store::postgres::is_postgres_url(url),
        "`database` must be a postgres:// or postgresql:// URL, not `{}` (leave it \
         unset to use the embedded SQLite database in the data directory)",
        store::postgres::redact_url(url)
    );
    Ok(Some(url))
}

/// Opens the store: the PostgreSQL `database` when one is configured (its
/// schema created or upgraded), else the SQLite file in `data_dir`. Creates
/// the data directory either way (it also holds precompiled components).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    if let Some(url) = postgres_url(config)? {
        let settings = store::postgres::Settings {
            max_connections: config.database_max_connections,
            schema: config.database_schema.clone(),
            notifications: config.database_notifications,
            ..store::postgres::Settings::default()
        };
        let store = store::postgres::PostgresStore::connect(url, &settings)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    store::postgres::redact_url(url)
                )
            })?;
        return Ok(Arc::new(store));
    }
    let path = config.data_dir.join(DATABASE_FILE);
    let store = store::sqlite::SqliteStore::open(&path, config.durability.into())
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    Ok(Arc::new(store))
}

/// The file inside the data directory that keeps a generated node id.
pub const NODE_ID_FILE: &str = "node-id";

/// This node's id: `node-id` from the configuration, else the one kept in
/// the data directory, generated on first start.
pub fn node_id(config: &Config) -> anyhow::Result<model::NodeId> {
    if let Some(id) = &config.node_id {
        let id = id.trim();
        anyhow::ensure!(
            !id.is_empty() && id.len() <= 128,
            "`node-id` must be 1 to 128 characters"
        );
        return Ok(model::NodeId::new_unchecked(id));
    }
    let path = config.data_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(model::NodeId::new_unchecked(id.trim())),
        Ok(_) | Err(_) => {
            let id = model::NodeId::generate();
            std::fs::write(&path, format!("{id}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
    }
}

/// Runs the server on `listener` until `shutdown` resolves: opens the store,
/// builds the sandbox, starts the engine (which claims due work from the
/// store as it goes) and serves the API.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_clock(config, listener, shutdown, Arc::new(engine::SystemClock)).await
}

/// [`run`] with the engine's clock replaced, so that tests can check retry
/// delays and deadlines without sleeping.
pub async fn run_with_clock(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn engine::Clock>,
) -> anyhow::Result<()> {
    let App { router, engine } = app(&config, clock).await?;
    tracing::info!(addr = %listener.local_addr()?, database = %database_label(&config), data_dir = %config.data_dir.display(), "stephost serving");
    let grace = config.shutdown_grace.0;
    // The API keeps serving while the engine drains (readiness says 503),
    // so that requests in flight and waiters still get answers; then it
    // stops.
    let drained = async move {
        shutdown.await;
        tracing::info!(grace = ?grace, "stopping: claiming nothing more, letting running attempts finish");
        let done = engine.shutdown(grace).await;
        tracing::info!(
            handed_back = done.handed_back,
            abandoned = done.abandoned,
            leases_released = done.released,
            "the engine has stopped"
        );
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(drained)
        .await
        .context("the server failed")
}

/// A server assembled but not yet serving: the API's router and the
/// engine behind it (already claiming work). [`run_with_clock`] serves
/// the router on a listener and drains the engine at shutdown; the fuzz
/// targets (`fuzz/`) call the router in process.
#[derive(Debug)]
pub struct App {
    /// Every route of the API.
    pub router: axum::Router,
    /// The engine the API submits to.
    pub engine: engine::Engine,
}

/// Checks the configuration, opens the store, builds the sandbox, starts
/// the engine and builds the API over them.
pub async fn app(config: &Config, clock: Arc<dyn engine::Clock>) -> anyhow::Result<App> {
    check_database(config)?;
    check_quotas(config)?;
    let step_http = config.step_http().map_err(|e| anyhow::anyhow!(e))?;
    let store: Arc<dyn Store> = open_store(config).await?;
    // One client for callbacks and steps' requests alike.
    let outbound = outbound::Outbound::new(&outbound::Settings {
        allow_networks: config.outbound_allow_networks.iter().map(|n| n.0).collect(),
        ..outbound::Settings::default()
    })
    .context("cannot build the outbound HTTP client")?;
    let sandbox = Arc::new(
        sandbox::Sandbox::new(sandbox::Settings {
            cache_dir: Some(config.data_dir.join("precompiled")),
            cache_max_bytes: config.component_cache_disk_bytes,
            max_prepared_bytes: config.component_cache_memory_bytes,
            pool: sandbox::PoolSize {
                max_concurrent_instances: u32::try_from(config.workers.max(1) * 2 + 4)
                    .unwrap_or(u32::MAX),
            },
            outbound: Some(outbound.clone()),
            ..sandbox::Settings::default()
        })
        .context("cannot start the sandbox")?,
    );
    let pool = runner::AttemptPool::new(config.workers)
        .map_err(|e| anyhow::anyhow!("cannot start the attempt threads: {e}"))?;
    let attempt_runtime = pool.handle();
    let runner = Arc::new(runner::SandboxRunner::new(sandbox, store.clone(), pool));
    let key = secrets::load_key(
        config.secrets_key.as_ref().map(|k| k.expose()),
        &config.data_dir,
    )?;
    let vault = secrets::Vault::new(key, store.clone());
    let engine = engine::Engine::start(
        store.clone(),
        engine::Services {
            runner: runner.clone(),
            secrets: Arc::new(vault.clone()),
            clock,
            outbound,
        },
        engine::Settings {
            workers: config.workers,
            max_in_flight: config.max_in_flight,
            runtime: Some(attempt_runtime),
            node: node_id(config)?,
            lease_ttl: config.lease_ttl.0,
            poll_interval: config.poll_interval.0,
            claim_work: config.claim_work,
            quotas: config.default_quotas(),
            retention: config.execution_retention.0,
            callbacks: callback_settings(config)?,
            step_http: step_http.clone(),
        },
    )
    .await
    .context("cannot start the engine")?;
    let state = api::AppState::new(
        store,
        engine.clone(),
        runner,
        vault,
        config
            .admin_token
            .as_ref()
            .map(|t| api::AdminToken::new(t.expose())),
        api::Settings {
            max_body_bytes: config.max_body_bytes,
            max_component_bytes: config.max_component_bytes,
            max_signal_bytes: config.max_signal_bytes,
            max_batch_executions: config.max_batch_executions,
            max_batch_body_bytes: config.max_batch_body_bytes,
            default_wait: Duration::from_secs(config.default_wait_seconds),
            max_wait: Duration::from_secs(config.max_wait_seconds),
            quotas: config.default_quotas(),
            global_rate: api::Rate::new(
                config.global_submissions_per_second,
                config.global_submissions_burst,
            ),
            step_http_caps: step_http.caps,
        },
    );
    Ok(App {
        router: api::router(state),
        engine,
    })
}

/// The callback settings, refusing a schedule without attempts and limits
/// that are not limits.
fn callback_settings(config: &Config) -> anyhow::Result<engine::deliver::Settings> {
    anyhow::ensure!(
        !config.callback_retry_delays.is_empty(),
        "`callback-retry-delays` needs at least one entry: the first attempt's delay (`0s` \
         for at once)"
    );
    anyhow::ensure!(
        config.callback_concurrency >= 1,
        "`callback-concurrency` must be at least 1"
    );
    let timeout = config.callback_timeout.0;
    anyhow::ensure!(
        (Duration::from_millis(100)..=Duration::from_secs(600)).contains(&timeout),
        "`callback-timeout` must be between 100ms and 10m, not {timeout:?}"
    );
    Ok(engine::deliver::Settings {
        retry_delays: config.callback_retry_delays.iter().map(|d| d.0).collect(),
        timeout,
        concurrency: config.callback_concurrency,
        max_output_bytes: config.callback_max_output_bytes,
        rotation_window: config.webhook_secret_rotation_window.0,
    })
}

/// Refuses quota and rate settings that are not limits.
fn check_quotas(config: &config::Config) -> anyhow::Result<()> {
    let mut problems = config.default_quotas().problems();
    let global = model::Quotas {
        submissions_per_second: config.global_submissions_per_second,
        submissions_burst: config.global_submissions_burst,
        ..model::Quotas::default()
    };
    problems.extend(
        global
            .problems()
            .into_iter()
            .map(|(field, message)| (format!("global_{field}"), message)),
    );
    match problems.first() {
        None => Ok(()),
        Some((field, message)) => {
            let key = if field.starts_with("global_") {
                field.replace('_', "-")
            } else {
                format!("quota-{}", field.replace('_', "-"))
            };
            anyhow::bail!("invalid configuration: `{key}`: {message}")
        }
    }
}

//! Server configuration: one serde tree, layered as defaults, then a TOML
//! file, then `STEPHOST_*` environment variables, then command-line flags.
//! Unknown keys are errors. This is the only module that reads the
//! environment for server settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::store::sqlite::Durability;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8480";

/// A secret string: redacted in `Debug` and never serialized.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[REDACTED]")
    }
}

/// A length of time written as text (`5s`, `250ms`, `1m`, `PT5S`), as in
/// workflow definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub std::time::Duration);

impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::engine::definition::parse_duration(&text)
            .map(Interval)
            .map_err(serde::de::Error::custom)
    }
}

/// How long finished executions are kept: a length of time (`30d`,
/// `12h`, `PT1H`) or `forever`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<std::time::Duration>);

impl Retention {
    /// The default: thirty days.
    pub const DEFAULT: Self = Self(Some(std::time::Duration::from_secs(30 * 24 * 3600)));
}

impl Serialize for Retention {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(d) => Interval(d).serialize(s),
            None => s.serialize_str("forever"),
        }
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "forever" {
            return Ok(Self(None));
        }
        let keep = crate::engine::definition::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("{e} (or `forever`, to keep every execution)"))
        })?;
        if keep.is_zero() {
            return Err(serde::de::Error::custom(
                "a retention of 0 would delete executions as they finish: give a length of \
                 time, or `forever` to keep every execution",
            ));
        }
        Ok(Self(Some(keep)))
    }
}

/// A network outbound requests may reach after all: a CIDR (`10.0.0.0/8`,
/// `fd00::/8`) or one address (`10.1.2.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(pub ipnet::IpNet);

impl Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let text = text.trim();
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            return Ok(Self(net.trunc()));
        }
        text.parse::<std::net::IpAddr>()
            .map(|ip| Self(ipnet::IpNet::from(ip)))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a network: write a CIDR such as `10.0.0.0/8` or \
                     `fd00::/8`, or one address"
                ))
            })
    }
}

/// Everything `stephost serve` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// Address to listen on (`STEPHOST_LISTEN`, `--listen`).
    pub listen: SocketAddr,
    /// Where the database and precompiled components live
    /// (`STEPHOST_DATA_DIR`, `--data-dir`).
    pub data_dir: PathBuf,
    /// A PostgreSQL database to keep everything in instead of the embedded
    /// SQLite file in `data-dir` (`STEPHOST_DATABASE`, `--database`): a
    /// libpq URL, `postgres://user:password@host:port/db?sslmode=require`.
    /// Several servers may share one; each then needs its own `node-id` (or
    /// data directory) and all the same `secrets-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<Secret>,
    /// The most connections this server opens to a PostgreSQL `database`.
    pub database_max_connections: u32,
    /// The schema of the PostgreSQL `database` that holds stephost's tables,
    /// created if missing (`STEPHOST_DATABASE_SCHEMA`; lower-case letters,
    /// digits and `_`). Without it, the URL's search path (normally
    /// `public`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_schema: Option<String>,
    /// A token that may manage tenants and tokens (`STEPHOST_ADMIN_TOKEN`).
    /// Without it (and without an admin token made through the API),
    /// tenants are created with `stephost tenant create NAME --data-dir DIR`
    /// on the embedded store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
    /// How many step attempts run at once (default: the number of CPUs).
    pub workers: usize,
    /// How many executions are driven at once; the other due ones wait in
    /// the store, earliest first. Waiting and parked executions (retry
    /// delays) do not count.
    pub max_in_flight: usize,
    /// This node's id in the leases it takes (`STEPHOST_NODE_ID`). Without
    /// it, an id is generated into `<data-dir>/node-id` on first start and
    /// kept, so that a restart takes back its own leases at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Whether this node claims and runs executions and fires schedules
    /// (`STEPHOST_CLAIM_WORK`; default true). `false` makes an API-only
    /// node of several sharing a PostgreSQL `database`: it accepts
    /// requests and answers waits, and the others run the work.
    pub claim_work: bool,
    /// How long a node's lease on an execution lasts unless renewed
    /// (`STEPHOST_LEASE_TTL`; default `5s`). It is renewed every fifth of
    /// that while the node drives the execution, so a node that dies or
    /// stalls is taken over after at most this long plus one poll.
    pub lease_ttl: Interval,
    /// The longest a node goes without looking in the store for due work,
    /// and a waiter without reading the execution it waits for
    /// (`STEPHOST_POLL_INTERVAL`; default `1s`): the fallback for hints
    /// from other nodes that do not arrive.
    pub poll_interval: Interval,
    /// Whether nodes sharing a PostgreSQL `database` send each other hints
    /// with `LISTEN/NOTIFY` (default true), so that work and answers move
    /// between them at once. Turn it off behind a pooler that does not
    /// pass notifications on (PgBouncer in transaction mode); nodes then
    /// find each other's work within `poll-interval`.
    pub database_notifications: bool,
    /// How long a stopping server (`SIGTERM`, Ctrl-C) lets running
    /// attempts finish before it abandons them to be run again elsewhere
    /// (`STEPHOST_SHUTDOWN_GRACE`; default `20s`). Keep it below the time
    /// your supervisor waits before it kills the process.
    pub shutdown_grace: Interval,
    /// `full` (fsync every commit; the default), `normal` or `off`.
    pub durability: DurabilityConfig,
    /// Interval a synchronous call waits when the client does not say.
    pub default_wait_seconds: u64,
    /// The longest wait a client may ask for, in seconds.
    pub max_wait_seconds: u64,
    /// Largest request body in bytes, except component uploads.
    pub max_body_bytes: usize,
    /// Largest component upload in bytes.
    pub max_component_bytes: usize,
    /// Largest signal payload in bytes.
    pub max_signal_bytes: usize,
    /// The most executions one batch run creates
    /// (`POST /v1/executions/batch`; `STEPHOST_MAX_BATCH_EXECUTIONS`;
    /// default 1,000). A larger batch is refused with 422.
    pub max_batch_executions: u32,
    /// Largest batch request body in bytes (default 16 MiB); a batch's
    /// inputs are one body.
    pub max_batch_body_bytes: usize,
    /// The most bytes of compiled components this node keeps in memory
    /// (`STEPHOST_COMPONENT_CACHE_MEMORY_BYTES`; default 2 GiB); past it
    /// the least recently used are dropped, and loaded again from
    /// `<data-dir>/precompiled` when next needed (milliseconds, no compile).
    pub component_cache_memory_bytes: u64,
    /// The most bytes of precompiled components kept in
    /// `<data-dir>/precompiled` (`STEPHOST_COMPONENT_CACHE_DISK_BYTES`;
    /// default 4 GiB); past it the least recently used are deleted, and
    /// compiled again when next needed.
    pub component_cache_disk_bytes: u64,
    /// The key that encrypts tenant secrets at rest: 32 bytes, base64
    /// (`STEPHOST_SECRETS_KEY`). Without it, a key is generated into
    /// `<data-dir>/secrets.key` on first start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_key: Option<Secret>,
    /// The submissions per second a tenant may make unless the admin set
    /// its own `submissions_per_second` (`STEPHOST_QUOTA_SUBMISSIONS_PER_SECOND`;
    /// default: no limit). Enforced by each node for the requests it
    /// serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_submissions_per_second: Option<f64>,
    /// The burst above that rate (default: one second's worth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_submissions_burst: Option<u32>,
    /// How many steps a tenant may register (default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_max_steps: Option<u64>,
    /// How many workflows a tenant may define (default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_max_workflows: Option<u64>,
    /// The bytes of components a tenant may keep (default 2 GiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_max_component_bytes: Option<u64>,
    /// How many secrets a tenant may keep (default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_max_secrets: Option<u64>,
    /// How many executions a tenant may run at once, on all nodes
    /// together, unless the admin set its own `max_concurrent_executions`
    /// (default: no limit but the workers').
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_max_concurrent_executions: Option<u64>,
    /// How many queued executions a tenant may have unless the admin set
    /// its own `max_queued_executions` (default: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_max_queued_executions: Option<u64>,
    /// The submissions per second this node accepts from all tenants
    /// together (`STEPHOST_GLOBAL_SUBMISSIONS_PER_SECOND`; default: no
    /// limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_submissions_per_second: Option<f64>,
    /// The burst above that rate (default: one second's worth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_submissions_burst: Option<u32>,
    /// How long a finished execution is kept after it finished, with its
    /// steps, attempts and logs and the idempotency keys that point at it
    /// (`STEPHOST_EXECUTION_RETENTION`; default `30d`; `forever` keeps
    /// every execution). Afterwards it is deleted: reading it answers 404,
    /// it leaves listings, and a request with its idempotency key starts a
    /// new execution. Unfinished executions are never deleted.
    pub execution_retention: Retention,
    /// Private networks that callbacks may reach after all, for internal
    /// receivers (`STEPHOST_OUTBOUND_ALLOW_NETWORKS='["10.20.0.0/16"]'`;
    /// default none). Without them, every loopback, private (RFC 1918),
    /// carrier-grade NAT, link-local (cloud metadata), unique-local,
    /// multicast and reserved address is refused.
    pub outbound_allow_networks: Vec<Network>,
    /// The hosts any step may call over HTTP: the ceiling over every
    /// tenant's egress allowlist and every step's `allow_http`
    /// (`STEPHOST_STEP_HTTP_ALLOW='["*.example.com"]'`; default `["*"]`:
    /// what the tenant and the step allow). Loopback, private and metadata
    /// addresses stay refused whatever it says (`outbound-allow-networks`
    /// opens networks).
    pub step_http_allow: Vec<crate::model::HostPattern>,
    /// The most HTTP requests one attempt of a step may make (default 50);
    /// a step may lower it (`limits.http_requests`).
    pub step_http_max_requests: u32,
    /// The most response body bytes one attempt of a step may read over
    /// HTTP, all its requests together (default 16 MiB); a step may lower
    /// it (`limits.http_response_bytes`).
    pub step_http_max_response_bytes: u64,
    /// The most HTTP requests one attempt of a step may have open at once
    /// (default 4); a step may lower it (`limits.http_concurrent`).
    pub step_http_max_concurrent: u32,
    /// When each attempt at a callback is made: the first entry after the
    /// event, each next one after the attempt before it failed, each plus
    /// up to a tenth as jitter (`STEPHOST_CALLBACK_RETRY_DELAYS='["0s","1s","2s"]'`;
    /// default at once, 5s, 5m, 30m, 2h, 5h, 10h, 10h). When they run out,
    /// the delivery has failed.
    pub callback_retry_delays: Vec<Interval>,
    /// How long a callback's receiver has to answer with a 2xx
    /// (`STEPHOST_CALLBACK_TIMEOUT`; default `15s`).
    pub callback_timeout: Interval,
    /// How many callbacks this node sends at once (default 32), apart from
    /// the workers that run steps.
    pub callback_concurrency: usize,
    /// The largest output (in bytes of JSON) a callback body carries;
    /// a larger one is replaced by `output_url`, a link to the execution
    /// (default 256 KiB).
    pub callback_max_output_bytes: usize,
    /// How long a rotated-out signing secret keeps signing callbacks beside
    /// the new one (`STEPHOST_WEBHOOK_SECRET_ROTATION_WINDOW`; default `24h`).
    pub webhook_secret_rotation_window: Interval,
}

impl Config {
    /// What steps may do over HTTP, refusing caps of zero.
    pub fn step_http(&self) -> Result<crate::model::StepHttpPolicy, String> {
        for (key, value) in [
            (
                "step-http-max-requests",
                u64::from(self.step_http_max_requests),
            ),
            (
                "step-http-max-response-bytes",
                self.step_http_max_response_bytes,
            ),
            (
                "step-http-max-concurrent",
                u64::from(self.step_http_max_concurrent),
            ),
        ] {
            if value == 0 {
                return Err(format!(
                    "`{key}` must be at least 1 (to keep steps off the network, leave \
                     `step-http-allow` empty)"
                ));
            }
        }
        Ok(crate::model::StepHttpPolicy {
            allow: self.step_http_allow.clone(),
            caps: crate::model::HttpCaps {
                max_requests: self.step_http_max_requests,
                max_response_bytes: self.step_http_max_response_bytes,
                max_concurrent: self.step_http_max_concurrent,
            },
        })
    }

    /// The quotas a tenant has where the admin set none of its own.
    pub fn default_quotas(&self) -> crate::model::Quotas {
        crate::model::Quotas {
            submissions_per_second: self.quota_submissions_per_second,
            submissions_burst: self.quota_submissions_burst,
            max_steps: self.quota_max_steps,
            max_workflows: self.quota_max_workflows,
            max_component_bytes: self.quota_max_component_bytes,
            max_secrets: self.quota_max_secrets,
            max_concurrent_executions: self.quota_max_concurrent_executions,
            max_queued_executions: self.quota_max_queued_executions,
            max_step_fuel: None,
            max_step_memory_bytes: None,
            max_step_timeout_ms: None,
            weight: Some(1),
        }
    }
}

/// How hard the store works to keep each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DurabilityConfig {
    /// fsync on every commit: an acknowledged change survives power loss.
    Full,
    /// Survives a process crash, not a power loss.
    Normal,
    /// For benchmarks and throwaway data.
    Off,
}

impl From<DurabilityConfig> for Durability {
    fn from(d: DurabilityConfig) -> Self {
        match d {
            DurabilityConfig::Full => Durability::Full,
            DurabilityConfig::Normal => Durability::Normal,
            DurabilityConfig::Off => Durability::Off,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            data_dir: PathBuf::from("stephost-data"),
            database: None,
            database_max_connections: 16,
            database_schema: None,
            admin_token: None,
            workers: cpus,
            max_in_flight: 512,
            node_id: None,
            claim_work: true,
            lease_ttl: Interval(crate::engine::Settings::LEASE_TTL),
            poll_interval: Interval(crate::engine::Settings::POLL_INTERVAL),
            database_notifications: true,
            shutdown_grace: Interval(std::time::Duration::from_secs(20)),
            durability: DurabilityConfig::Full,
            default_wait_seconds: 60,
            max_wait_seconds: 300,
            max_body_bytes: 1 << 20,
            max_component_bytes: 64 << 20,
            max_signal_bytes: 256 << 10,
            max_batch_executions: 1_000,
            max_batch_body_bytes: 16 << 20,
            component_cache_memory_bytes: crate::sandbox::Settings::MAX_PREPARED_BYTES,
            component_cache_disk_bytes: crate::sandbox::Settings::CACHE_MAX_BYTES,
            secrets_key: None,
            quota_submissions_per_second: None,
            quota_submissions_burst: None,
            quota_max_steps: Some(1000),
            quota_max_workflows: Some(1000),
            quota_max_component_bytes: Some(2 << 30),
            quota_max_secrets: Some(1000),
            quota_max_concurrent_executions: None,
            quota_max_queued_executions: None,
            global_submissions_per_second: None,
            global_submissions_burst: None,
            execution_retention: Retention::DEFAULT,
            outbound_allow_networks: Vec::new(),
            step_http_allow: crate::model::StepHttpPolicy::default().allow,
            step_http_max_requests: crate::model::HttpCaps::DEFAULT.max_requests,
            step_http_max_response_bytes: crate::model::HttpCaps::DEFAULT.max_response_bytes,
            step_http_max_concurrent: crate::model::HttpCaps::DEFAULT.max_concurrent,
            callback_retry_delays: crate::engine::deliver::Settings::default_delays()
                .into_iter()
                .map(Interval)
                .collect(),
            callback_timeout: Interval(std::time::Duration::from_secs(15)),
            callback_concurrency: 32,
            callback_max_output_bytes: crate::engine::callbacks::MAX_OUTPUT_BYTES,
            webhook_secret_rotation_window: Interval(std::time::Duration::from_secs(24 * 3600)),
        }
    }
}

/// Flags that override the other layers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(rename = "data-dir", skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--database`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// Environment variables that belong to the client and tools, not to the
/// server's configuration.
const NOT_SERVER_KEYS: &[&str] = &[
    "url",
    "token",
    "cache-dir",
    "polyglot-dir",
    "config",
    "home",
];

impl Config {
    /// Loads the layers. `file` is the TOML file (`--config` or
    /// `STEPHOST_CONFIG`); a missing file given explicitly is an error.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(format!("config file {} does not exist", file.display()));
            }
            fig = fig.merge(Toml::file_exact(file));
        }
        fig = fig
            .merge(
                Env::prefixed("STEPHOST_")
                    .map(|k| k.as_str().to_ascii_lowercase().replace('_', "-").into())
                    .filter(|k| !NOT_SERVER_KEYS.contains(&k.as_str())),
            )
            .merge(Serialized::defaults(overrides));
        fig.extract().map_err(|e| {
            e.into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// Where stephost keeps what it manages for step authors (the Rust SDK it
/// writes for scaffolds): `$STEPHOST_HOME`, else `$XDG_DATA_HOME/stephost`
/// (when that is an absolute path), else `$HOME/.local/share/stephost`;
/// `None` when none of them is set.
pub fn stephost_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("STEPHOST_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home));
    }
    let xdg = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("share"))
    })?;
    Some(base.join("stephost"))
}

/// Where `stephost step call` and `step inspect` keep precompiled
/// components unless told otherwise: `$XDG_CACHE_HOME/stephost` (when that
/// is an absolute path), else `$HOME/.cache/stephost`; `None` when neither
/// variable is set.
pub fn user_cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("stephost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment's Jail API fixes the closure's error type"
    )]
    fn layers_apply_in_order_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "s.toml",
                "workers = 3\nmax-wait-seconds = 10\nlisten = \"127.0.0.1:1\"",
            )?;
            jail.set_env("STEPHOST_MAX_WAIT_SECONDS", "20");
            jail.set_env("STEPHOST_URL", "http://ignored");
            jail.set_env("STEPHOST_COMPONENT_CACHE_MEMORY_BYTES", "1048576");
            let c = Config::load(
                Some(Path::new("s.toml")),
                &Overrides {
                    listen: Some("127.0.0.1:2".parse().unwrap()),
                    data_dir: None,
                    database: None,
                },
            )
            .map_err(figment::Error::from)?;
            assert_eq!(c.workers, 3);
            assert_eq!(c.max_wait_seconds, 20);
            assert_eq!(c.listen.port(), 2);
            assert_eq!(c.component_cache_memory_bytes, 1 << 20);
            assert_eq!(
                c.component_cache_disk_bytes,
                crate::sandbox::Settings::CACHE_MAX_BYTES
            );

            jail.set_env("STEPHOST_BOGUS", "1");
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.contains("bogus"), "{err}");
            Ok(())
        });
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment's Jail API fixes the closure's error type"
    )]
    fn the_database_comes_from_each_layer_and_is_redacted() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("s.toml", "database = \"postgres://a:pw1@file/db\"")?;
            let c = Config::load(Some(Path::new("s.toml")), &Overrides::default())
                .map_err(figment::Error::from)?;
            assert_eq!(
                c.database.as_ref().map(Secret::expose),
                Some("postgres://a:pw1@file/db")
            );
            assert!(!format!("{c:?}").contains("pw1"));
            jail.set_env("STEPHOST_DATABASE", "postgres://b@env/db");
            jail.set_env("STEPHOST_DATABASE_MAX_CONNECTIONS", "4");
            let c = Config::load(Some(Path::new("s.toml")), &Overrides::default())
                .map_err(figment::Error::from)?;
            assert_eq!(
                c.database.as_ref().map(Secret::expose),
                Some("postgres://b@env/db")
            );
            assert_eq!(c.database_max_connections, 4);
            let flag = Overrides {
                database: Some("postgres://c@flag/db".into()),
                ..Overrides::default()
            };
            let c = Config::load(Some(Path::new("s.toml")), &flag).map_err(figment::Error::from)?;
            assert_eq!(
                c.database.as_ref().map(Secret::expose),
                Some("postgres://c@flag/db")
            );
            Ok(())
        });
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment's Jail API fixes the closure's error type"
    )]
    fn the_retention_is_a_length_of_time_or_forever() {
        use std::time::Duration;
        figment::Jail::expect_with(|jail| {
            let load = || Config::load(None, &Overrides::default());
            let days = |n: u64| Some(Duration::from_secs(n * 24 * 3600));
            assert_eq!(load().unwrap().execution_retention.0, days(30));
            jail.create_file("r.toml", "execution-retention = \"12h\"")?;
            let c = Config::load(Some(Path::new("r.toml")), &Overrides::default())
                .map_err(figment::Error::from)?;
            assert_eq!(
                c.execution_retention.0,
                Some(Duration::from_secs(12 * 3600))
            );
            jail.set_env("STEPHOST_EXECUTION_RETENTION", "7d");
            assert_eq!(load().unwrap().execution_retention.0, days(7));
            jail.set_env("STEPHOST_EXECUTION_RETENTION", "PT90S");
            let keep = load().unwrap().execution_retention.0;
            assert_eq!(keep, Some(Duration::from_secs(90)));
            jail.set_env("STEPHOST_EXECUTION_RETENTION", "forever");
            assert_eq!(load().unwrap().execution_retention.0, None);
            jail.set_env("STEPHOST_EXECUTION_RETENTION", "0s");
            let err = load().unwrap_err();
            assert!(err.contains("a retention of 0"), "{err}");
            jail.set_env("STEPHOST_EXECUTION_RETENTION", "a while");
            let err = load().unwrap_err();
            assert!(err.contains("or `forever`"), "{err}");
            Ok(())
        });
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment's Jail API fixes the closure's error type"
    )]
    fn durations_and_switches_read_as_text() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None, &Overrides::default()).map_err(figment::Error::from)?;
            assert_eq!(c.lease_ttl.0, std::time::Duration::from_secs(5));
            assert_eq!(c.poll_interval.0, std::time::Duration::from_secs(1));
            assert!(c.claim_work && c.database_notifications);
            jail.create_file("s.toml", "lease-ttl = \"10s\"\npoll-interval = \"250ms\"")?;
            jail.set_env("STEPHOST_CLAIM_WORK", "false");
            let c = Config::load(Some(Path::new("s.toml")), &Overrides::default())
                .map_err(figment::Error::from)?;
            assert_eq!(c.lease_ttl.0, std::time::Duration::from_secs(10));
            assert_eq!(c.poll_interval.0, std::time::Duration::from_millis(250));
            assert!(!c.claim_work);
            jail.set_env("STEPHOST_LEASE_TTL", "soon");
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.contains("`soon` is not a duration"), "{err}");
            Ok(())
        });
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment's Jail API fixes the closure's error type"
    )]
    fn outbound_and_callback_settings_read_from_the_environment() {
        use std::time::Duration;
        figment::Jail::expect_with(|jail| {
            let load = || Config::load(None, &Overrides::default());
            let c = load().unwrap();
            assert!(c.outbound_allow_networks.is_empty());
            assert_eq!(c.callback_retry_delays.len(), 8);
            assert_eq!(c.callback_retry_delays[1].0, Duration::from_secs(5));
            assert_eq!(c.callback_timeout.0, Duration::from_secs(15));
            jail.set_env(
                "STEPHOST_OUTBOUND_ALLOW_NETWORKS",
                r#"["127.0.0.0/8", "10.1.2.3", "fd00::/8"]"#,
            );
            jail.set_env("STEPHOST_CALLBACK_RETRY_DELAYS", r#"["0s","1s","2s"]"#);
            let c = load().unwrap();
            let nets: Vec<String> = c
                .outbound_allow_networks
                .iter()
                .map(|n| n.0.to_string())
                .collect();
            assert_eq!(nets, ["127.0.0.0/8", "10.1.2.3/32", "fd00::/8"]);
            assert_eq!(
                c.step_http().unwrap(),
                crate::model::StepHttpPolicy::default()
            );
            jail.set_env(
                "STEPHOST_STEP_HTTP_ALLOW",
                r#"["API.example.com", "*.example.org:443"]"#,
            );
            jail.set_env("STEPHOST_STEP_HTTP_MAX_REQUESTS", "7");
            let http = load().unwrap().step_http().unwrap();
            let allow: Vec<String> = http.allow.iter().map(ToString::to_string).collect();
            assert_eq!(allow, ["api.example.com", "*.example.org:443"]);
            assert_eq!(http.caps.max_requests, 7);
            jail.set_env("STEPHOST_STEP_HTTP_MAX_REQUESTS", "0");
            let err = load().unwrap().step_http().unwrap_err();
            assert!(
                err.contains("`step-http-max-requests` must be at least 1"),
                "{err}"
            );
            jail.set_env("STEPHOST_STEP_HTTP_MAX_REQUESTS", "7");
            jail.set_env("STEPHOST_STEP_HTTP_ALLOW", r#"["https://x.example"]"#);
            let err = load().unwrap_err();
            assert!(err.contains("without a scheme"), "{err}");
            let delays: Vec<Duration> = c.callback_retry_delays.iter().map(|d| d.0).collect();
            assert_eq!(delays, [0, 1, 2].map(Duration::from_secs));
            jail.set_env("STEPHOST_OUTBOUND_ALLOW_NETWORKS", r#"["10.0.0.0/33"]"#);
            let err = load().unwrap_err();
            assert!(err.contains("`10.0.0.0/33` is not a network"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_admin_token_is_redacted() {
        let c = Config {
            admin_token: Some(Secret("hunter2".into())),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
    }
}

//! The test harnesses' backend switch: with `TEST_STORE=postgres`, every
//! server a suite starts keeps its data in a schema of its own on the
//! PostgreSQL server at `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped when the server's
//! data goes; unset or `sqlite`, the embedded default. An unreachable
//! PostgreSQL fails the suite.

#![allow(dead_code, reason = "each suite uses part of the support")]

use std::str::FromStr as _;

/// The secrets key every test server on PostgreSQL uses (32 zero bytes).
pub const SECRETS_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// The database the tests use.
pub fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Whether the suites run on PostgreSQL.
pub fn on_postgres() -> bool {
    match std::env::var("TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("TEST_STORE must be `sqlite` or `postgres`, not `{other}`"),
    }
}

/// A schema for one server's data (kept across its restarts), dropped with
/// the last clone of its owner.
#[derive(Debug)]
pub struct Schema {
    pub name: String,
}

impl Schema {
    /// A new schema when the suites run on PostgreSQL.
    pub fn for_run() -> Option<Self> {
        on_postgres().then(Self::new)
    }

    /// A new schema, whatever the suites run on (for tests of several
    /// nodes, which need PostgreSQL).
    pub fn new() -> Self {
        Self {
            name: format!("e2e_{}", uuid::Uuid::now_v7().simple()),
        }
    }

    /// The settings that put a server's data in this schema.
    pub fn settings(&self) -> [(&'static str, String); 3] {
        [
            ("database", database_url()),
            ("database-schema", self.name.clone()),
            ("secrets-key", SECRETS_KEY.to_owned()),
        ]
    }

    /// The same as `STEPHOST_*` environment variables, for the binary.
    pub fn env(&self) -> Vec<(String, String)> {
        self.settings()
            .into_iter()
            .map(|(k, v)| {
                (
                    format!("STEPHOST_{}", k.to_ascii_uppercase().replace('-', "_")),
                    v,
                )
            })
            .collect()
    }

    /// Applies the settings to a configuration.
    pub fn configure(&self, config: &mut stephost::config::Config) {
        let settings: serde_json::Map<String, serde_json::Value> = self
            .settings()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        let patched: stephost::config::Config =
            serde_json::from_value(serde_json::Value::Object(settings)).expect("valid settings");
        config.database = patched.database;
        config.database_schema = patched.database_schema;
        config.secrets_key = patched.secrets_key;
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime, which cannot block on a future: a
        // thread of its own removes the schema.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let options = sqlx::postgres::PgConnectOptions::from_str(&database_url())?;
                let mut conn = sqlx::ConnectOptions::connect(&options).await?;
                // A transaction left open must fail the drop, not hang it.
                sqlx::query("SET lock_timeout = '20s'")
                    .execute(&mut conn)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                )))
                .execute(&mut conn)
                .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop schema {}: {e}", self.name);
        }
    }
}

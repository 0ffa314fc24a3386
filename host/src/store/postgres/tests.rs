//! The PostgreSQL backend against the server at `TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`), each test in a
//! schema of its own that is dropped afterwards. An unreachable server fails
//! these tests; nothing is skipped.

use std::sync::Arc;

use super::*;
use crate::store::conformance::{Harness, conformance_tests};

/// The database the tests use.
pub(crate) fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Stores in one schema of their own; every `open` opens the same schema.
struct Pg {
    schema: String,
}

impl Pg {
    fn new() -> Self {
        Self {
            schema: format!("conformance_{}", uuid::Uuid::now_v7().simple()),
        }
    }

    async fn connect(&self) -> PostgresStore {
        PostgresStore::connect(
            &test_database_url(),
            &Settings {
                schema: Some(self.schema.clone()),
                // The suite queues thousands of writes at once.
                acquire_timeout: Duration::from_secs(120),
                ..Settings::default()
            },
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {} must be reachable for these tests: {e}",
                redact_url(&test_database_url())
            )
        })
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // Drop runs inside the test's runtime, which cannot block on
        // another future: a thread of its own removes the schema.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let options = PgConnectOptions::from_str(&test_database_url())?;
                let mut conn = sqlx::ConnectOptions::connect(&options).await?;
                // A transaction left open must fail the drop, not hang it.
                sqlx::query("SET lock_timeout = '20s'")
                    .execute(&mut conn)
                    .await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    quote_ident(&schema)
                )))
                .execute(&mut conn)
                .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop schema {}: {e}", self.schema);
        }
    }
}

#[async_trait::async_trait]
impl Harness for Pg {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.connect().await)
    }
}

conformance_tests!(Pg::new());

/// Nodes starting at once against an empty schema migrate it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_migrate_once() {
    let pg = Pg::new();
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = test_database_url();
            let settings = Settings {
                schema: Some(pg.schema.clone()),
                max_connections: 2,
                ..Settings::default()
            };
            tokio::spawn(async move { PostgresStore::connect(&url, &settings).await })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.unwrap().expect("every node starts"));
    }
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM stephost_schema ORDER BY 1")
        .fetch_all(&stores[0].pool)
        .await
        .unwrap();
    assert_eq!(applied, (1..=schema::SCHEMA_VERSION).collect::<Vec<_>>());
}

/// A database a newer build upgraded is refused, not written to.
#[tokio::test]
async fn a_newer_schema_is_refused() {
    let pg = Pg::new();
    let store = pg.connect().await;
    sqlx::query("INSERT INTO stephost_schema (version) VALUES ($1)")
        .bind(schema::SCHEMA_VERSION + 1)
        .execute(&store.pool)
        .await
        .unwrap();
    store.close().await;
    let err = PostgresStore::connect(
        &test_database_url(),
        &Settings {
            schema: Some(pg.schema.clone()),
            ..Settings::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

/// A server that is not there is a clear error at once.
#[tokio::test]
async fn an_unreachable_server_is_an_error() {
    let err = PostgresStore::connect(
        "postgres://postgres@127.0.0.1:1/test",
        &Settings {
            acquire_timeout: Duration::from_secs(2),
            ..Settings::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err}");
    let err = PostgresStore::connect("postgres://[bad", &Settings::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid database URL"), "{err}");
}

/// Claimers on several nodes take disjoint batches: every due execution is
/// claimed by exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_take_each_execution_once() {
    use crate::store::conformance::work::lease;
    const N: usize = 400;
    let pg = Pg::new();
    let store = Arc::new(pg.connect().await);
    let tenant = Tenant {
        id: TenantId::generate(),
        name: "acme".into(),
        created_at: Timestamp::now(),
        suspended_at: None,
        quotas: Default::default(),
        egress: Default::default(),
    };
    store
        .create_tenant(
            &tenant,
            &crate::store::conformance::full_token(Some(&tenant.id)),
            TokenHash([7; 32]),
        )
        .await
        .unwrap();
    let t0 = Timestamp::now();
    for _ in 0..N {
        let e = crate::store::conformance::execution(&tenant.id, "orders", t0);
        store.create_execution(&e, None, None).await.unwrap();
    }
    let claimers: Vec<_> = (0..4)
        .map(|node| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let lease = lease(&format!("node-{node}"), Timestamp::MAX);
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_due(&lease, Timestamp::now(), 7).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|e| e.execution_id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), N, "claimed {} times in all", all.len());
    assert_eq!(distinct.len(), N);
}

#[tokio::test]
async fn schema_names_that_need_quoting_are_refused() {
    for bad in ["", "Upper", "1st", "a-b", "a b", &"x".repeat(64)] {
        let err = PostgresStore::connect(
            &test_database_url(),
            &Settings {
                schema: Some(bad.to_owned()),
                ..Settings::default()
            },
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("lower-case letters"),
            "{bad}: {err}"
        );
    }
    check_schema_name("stephost_2").unwrap();
}

#[test]
fn passwords_are_redacted_and_urls_recognised() {
    assert_eq!(
        redact_url("postgres://app:hunter2@db:5432/x"),
        "postgres://app:***@db:5432/x"
    );
    assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
    assert!(is_postgres_url("postgresql://db/x"));
    assert!(is_postgres_url("postgres://db/x"));
    assert!(!is_postgres_url("/var/lib/stephost"));
}

/// The next hint, within 20 s.
async fn next_hint(rx: &mut tokio::sync::broadcast::Receiver<Hint>) -> Hint {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a hint within 20 s")
        .expect("the hint channel is open")
}

/// What one store writes reaches another store on the same schema as hints
/// (due work, an event, a committed state), a store does not hear its own
/// hints, and with notifications off a store offers none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_reach_the_other_nodes() {
    use crate::store::conformance::{execution, work::lease};
    let pg = Pg::new();
    let a = pg.connect().await;
    let b = pg.connect().await;
    let mut heard_by_a = a.hints().expect("notifications are on by default");
    let mut heard_by_b = b.hints().expect("notifications are on by default");
    let tenant = TenantId::generate();
    a.create_tenant(
        &Tenant {
            id: tenant.clone(),
            name: "acme".into(),
            created_at: Timestamp::now(),
            suspended_at: None,
            quotas: Default::default(),
            egress: Default::default(),
        },
        &crate::store::conformance::full_token(Some(&tenant)),
        TokenHash([7; 32]),
    )
    .await
    .unwrap();
    let t0 = Timestamp::now();
    let mut exec = execution(&tenant, "orders", t0);
    assert_eq!(
        a.create_execution(&exec, None, None).await.unwrap(),
        Created::New
    );
    assert_eq!(next_hint(&mut heard_by_b).await, Hint::Work);
    let event = crate::model::NewEvent {
        kind: crate::model::EventKind::Cancel,
        name: None,
        payload: None,
        idempotency_key: None,
        at: t0,
    };
    assert!(matches!(
        a.send_event(&tenant, &exec.execution_id, &event)
            .await
            .unwrap(),
        Sent::Stored(_)
    ));
    assert_eq!(
        next_hint(&mut heard_by_b).await,
        Hint::Event(exec.execution_id.clone())
    );
    let held = lease(
        "a",
        Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(60))
            .unwrap(),
    );
    let claimed = a
        .claim_execution(&held, Timestamp::now(), &tenant, &exec.execution_id)
        .await
        .unwrap()
        .expect("claimed");
    exec.version = claimed.version;
    let version = a
        .commit_execution(Commit {
            deliveries: &[],
            execution: &exec,
            version: exec.version,
            owner: &held.owner,
            consumed: 0,
            next: Next::Hold { until: held.until },
        })
        .await
        .unwrap();
    assert_eq!(
        next_hint(&mut heard_by_b).await,
        Hint::Committed(exec.execution_id.clone(), version)
    );
    // Nothing of its own came back to `a`: PostgreSQL delivers a
    // channel's notifications in commit order, so `a`'s own (sent before
    // `b` heard the last of them) would arrive before this one of `b`.
    b.create_execution(&execution(&tenant, "orders", Timestamp::now()), None, None)
        .await
        .unwrap();
    assert_eq!(next_hint(&mut heard_by_a).await, Hint::Work);

    let quiet = PostgresStore::connect(
        &test_database_url(),
        &Settings {
            schema: Some(pg.schema.clone()),
            notifications: false,
            ..Settings::default()
        },
    )
    .await
    .unwrap();
    assert!(quiet.hints().is_none());
    assert!(quiet.hints.is_none(), "nor does it send any");
}

/// A park or finish commit that waits for the row lock of an event being
/// sent sees that event once it gets the lock: the parked execution is due
/// at the event's time, and the finished one keeps no event behind. (Each
/// statement after the fenced update must read a snapshot taken after the
/// lock was granted, not one from before the commit started waiting.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_waits_for_an_event_sees_it() {
    use crate::store::conformance::work::lease;
    use crate::store::conformance::{create, execution, later, new_tenant};
    for finish in [false, true] {
        let pg = Pg::new();
        let store = Arc::new(pg.connect().await);
        let acme = new_tenant(&*store, "acme").await;
        let t0 = Timestamp::now();
        let exec = execution(&acme, "orders", t0);
        create(&*store, &exec).await;
        let mut held = store
            .claim_due(&lease("a", later(t0, 60)), t0, 1)
            .await
            .unwrap()
            .pop()
            .expect("claimed");
        let id = held.execution_id.clone();
        // The sender: what `send_event` does, with its transaction held open.
        let mut sender = store.pool.begin().await.unwrap();
        let sender_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *sender)
            .await
            .unwrap();
        sqlx::query("SELECT 1 FROM executions WHERE id = $1 FOR UPDATE")
            .bind(id.as_str())
            .execute(&mut *sender)
            .await
            .unwrap();
        let event_at = later(t0, 1);
        sqlx::query(
            "INSERT INTO inbox (execution_id, kind, name, payload, created_ns)
             VALUES ($1, 'signal', 'approval', NULL, $2)",
        )
        .bind(id.as_str())
        .bind(nanos(event_at))
        .execute(&mut *sender)
        .await
        .unwrap();
        let next = if finish {
            held.enter(crate::model::Status::Succeeded, t0);
            Next::Finish
        } else {
            held.enter(crate::model::Status::Running, t0);
            Next::Park {
                wake_at: later(t0, 600),
            }
        };
        let committer = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                let owner = NodeId::new_unchecked("a");
                store
                    .commit_execution(Commit {
                        deliveries: &[],
                        execution: &held,
                        version: held.version,
                        owner: &owner,
                        consumed: 0,
                        next,
                    })
                    .await
            }
        });
        // Let the commit start and wait for the sender's lock.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            )
            .bind(sender_pid)
            .fetch_one(&store.pool)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the commit never waited for the sender's row lock"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        sender.commit().await.unwrap();
        committer.await.unwrap().unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE execution_id = $1")
            .bind(id.as_str())
            .fetch_one(&store.pool)
            .await
            .unwrap();
        if finish {
            assert_eq!(left, 0, "a finished execution keeps no events");
            assert_eq!(
                store
                    .next_wake_at(&NodeId::new_unchecked("b"))
                    .await
                    .unwrap(),
                None
            );
        } else {
            assert_eq!(left, 1, "the parked execution keeps its event");
            assert_eq!(
                store
                    .next_wake_at(&NodeId::new_unchecked("b"))
                    .await
                    .unwrap(),
                Some(event_at),
                "the event that arrived meanwhile makes the parked execution due"
            );
        }
    }
}

/// An upgrade to version 9 (retention) counts the executions that had
/// finished before it as finished at the upgrade, and unfinished ones as
/// unfinished: a retention of an hour keeps the finished one, a sweep past
/// the upgrade deletes it and only it.
#[tokio::test]
async fn an_upgrade_counts_finished_executions_as_finished_at_the_upgrade() {
    let pg = Pg::new();
    let tenant = TenantId::generate();
    let ids: Vec<ExecutionId> = (0..3).map(|_| ExecutionId::generate()).collect();
    {
        let options = PgConnectOptions::from_str(&test_database_url()).unwrap();
        let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
        let schema = quote_ident(&pg.schema);
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema};
             CREATE TABLE stephost_schema (
                 version BIGINT PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        for (i, upgrade) in schema::MIGRATIONS[..8].iter().enumerate() {
            sqlx::raw_sql(*upgrade).execute(&mut conn).await.unwrap();
            sqlx::query("INSERT INTO stephost_schema (version) VALUES ($1)")
                .bind(i as i64 + 1)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, 'old', '2026-01-01T00:00:00Z')",
        )
        .bind(tenant.as_str())
        .execute(&mut conn)
        .await
        .unwrap();
        // Queued (due), held by a node, and finished.
        let rows = [
            ("queued", Some(1_i64), None),
            ("running", Some(2), Some("n")),
            ("succeeded", None, None),
        ];
        for (id, (status, wake, owner)) in ids.iter().zip(rows) {
            let doc = serde_json::json!({
                "execution_id": id, "workflow_id": "w", "workflow_version": 1,
                "status": status, "input_data": null, "output": null, "error": null,
                "custom_data": null, "created_at": "2026-01-01T00:00:00Z",
                "started_at": null, "finished_at": null, "duration_ms": null,
                "history": [], "steps": []});
            sqlx::query(
                "INSERT INTO executions
                     (id, tenant_id, workflow_id, status, created_ns, version, wake_ns,
                      lease_owner, doc)
                 VALUES ($1, $2, 'w', $3, 0, 1, $4, $5, $6)",
            )
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(status)
            .bind(wake)
            .bind(owner)
            .bind(doc.to_string())
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    let store = pg.connect().await;
    let finished: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT id, finished_ns FROM executions ORDER BY seq")
            .fetch_all(&store.pool)
            .await
            .unwrap();
    let now = nanos(Timestamp::now());
    let at = finished.iter().map(|(_, at)| *at).collect::<Vec<_>>();
    assert_eq!(at[..2], [None, None], "{finished:?}");
    let upgraded = at[2].expect("the finished one has a finish time");
    assert!(
        (now - 60_000_000_000..=now).contains(&upgraded),
        "{upgraded} vs {now}"
    );

    let hour = jiff::SignedDuration::from_hours(1);
    let an_hour_ago = Timestamp::now().checked_sub(hour).unwrap();
    assert_eq!(store.purge_finished(an_hour_ago, 10).await.unwrap(), 0);
    let in_an_hour = Timestamp::now().checked_add(hour).unwrap();
    assert_eq!(store.purge_finished(in_an_hour, 10).await.unwrap(), 1);
    assert_eq!(store.execution(&tenant, &ids[2]).await.unwrap(), None);
    for id in &ids[..2] {
        assert!(
            store.execution(&tenant, id).await.unwrap().is_some(),
            "{id}"
        );
    }
}

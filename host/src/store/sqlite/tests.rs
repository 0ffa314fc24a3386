//! The conformance suite on SQLite, plus the schema and upgrade tests
//! only this backend has.

use rusqlite::Connection;

use super::schema::SCHEMA_VERSION;
use super::*;
use crate::store::conformance::{Harness, conformance_tests};

/// Stores in one temporary directory; every `open` opens the same file.
struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }
}

#[async_trait::async_trait]
impl Harness for Sqlite {
    async fn open(&self) -> Arc<dyn Store> {
        let path = self.dir.path().join("store.db");
        Arc::new(SqliteStore::open(&path, Durability::Full).expect("the store opens"))
    }
}

conformance_tests!(Sqlite::new());

#[test]
fn open_sets_the_pragmas_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path, Durability::Normal).unwrap());
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path, Durability::Full).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

/// A database of schema 1 (before the store owned the work) keeps its
/// unfinished executions through the upgrade: they are due at their
/// creation time, claimable, and the finished ones are not.
#[tokio::test]
async fn an_upgrade_from_schema_1_keeps_unfinished_work_due() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let tenant = TenantId::generate();
    let mut ids = Vec::new();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(super::schema::SCHEMA_1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        for (i, status) in ["queued", "running", "succeeded"].iter().enumerate() {
            let id = ExecutionId::generate();
            let doc = serde_json::json!({
                "execution_id": id, "workflow_id": "w", "workflow_version": 1,
                "status": status, "input_data": null, "output": null, "error": null,
                "custom_data": null, "created_at": "2026-01-01T00:00:00Z",
                "started_at": null, "finished_at": null, "duration_ms": null,
                "history": [], "steps": []});
            conn.execute(
                "INSERT INTO executions (id, tenant_id, workflow_id, status, created_ns, doc)
                 VALUES (?1, ?2, 'w', ?3, ?4, ?5)",
                params![
                    id.as_str(),
                    tenant.as_str(),
                    status,
                    i as i64,
                    doc.to_string()
                ],
            )
            .unwrap();
            ids.push(id);
        }
    }
    let store = SqliteStore::open(&path, Durability::Full).unwrap();
    let lease = crate::store::Lease {
        owner: NodeId::new_unchecked("upgraded"),
        until: Timestamp::now(),
    };
    let claimed = store.claim_due(&lease, Timestamp::now(), 10).await.unwrap();
    let claimed: Vec<ExecutionId> = claimed.into_iter().map(|e| e.execution_id).collect();
    assert_eq!(claimed, ids[..2]);
    // The finished one counts as finished at the upgrade: a retention of an
    // hour keeps it, a sweep past the upgrade deletes it.
    let hour = jiff::SignedDuration::from_hours(1);
    let an_hour_ago = Timestamp::now().checked_sub(hour).unwrap();
    assert_eq!(store.purge_finished(an_hour_ago, 10).await.unwrap(), 0);
    let in_an_hour = Timestamp::now().checked_add(hour).unwrap();
    assert_eq!(store.purge_finished(in_an_hour, 10).await.unwrap(), 1);
    assert_eq!(store.execution(&tenant, &ids[2]).await.unwrap(), None);
}

//! The rules of batch runs: a batch is stored whole and in order or not
//! at all, listed and summarised per tenant, and deduplicated by its
//! idempotency key.

use super::work::lease;
use super::*;
use crate::model::{BatchId, BatchMember};

/// `n` queued executions of one batch of `tenant`, created at `at`.
fn batch(tenant: &TenantId, n: usize, at: Timestamp) -> (BatchId, Vec<Execution>) {
    let id = BatchId::generate();
    let executions = (0..n)
        .map(|i| {
            let mut e = execution(tenant, "orders", at);
            e.custom_data = Some(json!({"index": i}));
            e.batch_id = Some(id.clone());
            e
        })
        .collect();
    (id, executions)
}

fn member_ids(members: &[BatchMember]) -> Vec<ExecutionId> {
    members.iter().map(|m| m.execution_id.clone()).collect()
}

/// A batch's executions read back as given, in order, due at once and
/// only by their tenant; the listing filter finds exactly them.
pub(crate) async fn a_batch_is_stored_whole_and_in_order(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let t0 = Timestamp::now();
    create(&*store, &execution(&acme, "orders", t0)).await;
    let (id, executions) = batch(&acme, 300, t0);
    let (other_id, others) = batch(&acme, 3, t0);
    assert_eq!(
        store.create_batch(&executions, None).await.unwrap(),
        Created::New
    );
    assert_eq!(
        store.create_batch(&others, None).await.unwrap(),
        Created::New
    );
    let members = store.batch(&acme, &id).await.unwrap();
    assert_eq!(member_ids(&members), ids(&executions), "input order");
    assert!(members.iter().all(|m| m.status == Status::Queued));
    assert!(members.iter().all(|m| m.created_at == t0));
    assert_eq!(store.batch(&acme, &other_id).await.unwrap().len(), 3);
    assert!(store.batch(&other, &id).await.unwrap().is_empty());
    assert!(
        store
            .batch(&acme, &BatchId::generate())
            .await
            .unwrap()
            .is_empty()
    );
    let stored = store
        .execution(&acme, &executions[123].execution_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.batch_id, Some(id.clone()));
    assert_eq!(stored.custom_data, Some(json!({"index": 123})));

    // Listed newest first, as any listing, and paged.
    let filter = ExecutionFilter {
        batch_id: Some(id.clone()),
        ..ExecutionFilter::default()
    };
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .executions(&acme, &filter, 100, cursor.as_deref())
            .await
            .unwrap();
        listed.extend(ids(&page.items));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut newest_first = ids(&executions);
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    assert!(
        store
            .executions(&other, &filter, 100, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Every one is due now; a status change shows in the batch.
    let a = lease("a", later(t0, 60));
    let claimed = store.claim_due(&a, later(t0, 1), 1000).await.unwrap();
    assert_eq!(claimed.len(), 1 + 300 + 3);
    let mut first = claimed
        .into_iter()
        .find(|e| e.execution_id == executions[0].execution_id)
        .expect("claimed");
    first.enter(Status::Succeeded, later(t0, 2));
    store
        .commit_execution(Commit {
            deliveries: &[],
            execution: &first,
            version: first.version,
            owner: &a.owner,
            consumed: 0,
            next: Next::Finish,
        })
        .await
        .unwrap();
    let members = store.batch(&acme, &id).await.unwrap();
    assert_eq!(members[0].status, Status::Succeeded);
    assert!(members[1..].iter().all(|m| m.status == Status::Queued));
}

/// A batch that cannot be stored whole stores nothing.
pub(crate) async fn a_batch_that_fails_stores_nothing(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let (id, mut executions) = batch(&acme, 200, Timestamp::now());
    // Its 151st collides with its 11th: the insert fails past the middle.
    executions[150].execution_id = executions[10].execution_id.clone();
    let key = Idempotency {
        key: "batch-1".into(),
        request_hash: [1; 32],
        on_conflict: OnConflict::ReturnExisting,
    };
    store
        .create_batch(&executions, Some(&key))
        .await
        .expect_err("a duplicate id");
    assert!(store.batch(&acme, &id).await.unwrap().is_empty());
    let all = store
        .executions(&acme, &ExecutionFilter::default(), 100, None)
        .await
        .unwrap();
    assert!(all.items.is_empty(), "{:?}", ids(&all.items));
    // The key was not kept either: the same key stores a good batch.
    let (id, executions) = batch(&acme, 5, Timestamp::now());
    assert_eq!(
        store.create_batch(&executions, Some(&key)).await.unwrap(),
        Created::New
    );
    assert_eq!(store.batch(&acme, &id).await.unwrap().len(), 5);
    // A deleted tenant gets none.
    let gone = new_tenant(&*store, "gone").await;
    assert!(store.delete_tenant(&gone).await.unwrap());
    let (id, executions) = batch(&gone, 3, Timestamp::now());
    assert!(matches!(
        store.create_batch(&executions, None).await,
        Err(Error::NoTenant(_))
    ));
    assert!(store.batch(&gone, &id).await.unwrap().is_empty());
}

/// A repeat of a batch with the same key returns the first execution of
/// the batch it stored, and stores nothing; another body with the key is
/// refused.
pub(crate) async fn a_repeated_batch_key_returns_the_first(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let key = |hash| Idempotency {
        key: "nightly".into(),
        request_hash: [hash; 32],
        on_conflict: OnConflict::ReturnExisting,
    };
    let (id, executions) = batch(&acme, 4, Timestamp::now());
    assert_eq!(
        store
            .create_batch(&executions, Some(&key(1)))
            .await
            .unwrap(),
        Created::New
    );
    let (again_id, again) = batch(&acme, 4, Timestamp::now());
    match store.create_batch(&again, Some(&key(1))).await.unwrap() {
        Created::Existing(first) => {
            assert_eq!(first.execution_id, executions[0].execution_id);
            assert_eq!(first.batch_id, Some(id.clone()));
        }
        other => panic!("expected the first batch, got {other:?}"),
    }
    assert!(store.batch(&acme, &again_id).await.unwrap().is_empty());
    assert_eq!(
        store.create_batch(&again, Some(&key(2))).await.unwrap(),
        Created::KeyReused
    );
    assert!(store.batch(&acme, &again_id).await.unwrap().is_empty());
    assert_eq!(
        member_ids(&store.batch(&acme, &id).await.unwrap()),
        ids(&executions)
    );
}

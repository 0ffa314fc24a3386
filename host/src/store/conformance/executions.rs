//! The rules of executions as records: round trips, listing filters,
//! stable paging, cursors and idempotency keys (concurrent creates
//! included).

use super::*;

/// An execution reads back exactly as saved, and only by its tenant.
pub(crate) async fn execution_round_trip(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let mut exec = execution(&acme, "orders", Timestamp::now());
    create(&*store, &exec).await;
    let id = exec.execution_id.clone();
    assert_eq!(
        store.execution(&acme, &id).await.unwrap(),
        Some(exec.clone())
    );
    assert_eq!(store.execution(&other, &id).await.unwrap(), None);
    assert_eq!(
        store
            .execution(&acme, &ExecutionId::generate())
            .await
            .unwrap(),
        None
    );

    exec.enter(Status::Running, Timestamp::now());
    exec.steps[0].output = Some(json!({"n": 0.1}));
    exec.enter(Status::Succeeded, Timestamp::now());
    exec.output = Some(json!({"n": 0.1}));
    save(&*store, &mut exec).await;
    assert_eq!(store.execution(&acme, &id).await.unwrap(), Some(exec));

    // Committing needs the execution to exist.
    let stranger = execution(&acme, "orders", Timestamp::now());
    let refused = store
        .commit_execution(Commit {
            deliveries: &[],
            execution: &stranger,
            version: 1,
            owner: &tester(),
            consumed: 0,
            next: Next::Hold {
                until: later(Timestamp::now(), 60),
            },
        })
        .await;
    assert!(matches!(refused, Err(Error::LeaseLost(_))), "{refused:?}");
}

/// Filters narrow the listing; time bounds are strict.
pub(crate) async fn listing_filters(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let t0 = Timestamp::now();
    let a = execution(&acme, "alpha", t0);
    let mut b = execution(&acme, "beta", later(t0, 1));
    let mut c = execution(&acme, "alpha", later(t0, 2));
    b.enter(Status::Running, later(t0, 3));
    c.enter(Status::Succeeded, later(t0, 3));
    for e in [&a, &b, &c, &execution(&other, "alpha", t0)] {
        create(&*store, e).await;
    }
    let expect = async |filter: ExecutionFilter, want: &[&Execution]| {
        let page = store.executions(&acme, &filter, 100, None).await.unwrap();
        assert_eq!(page.next_cursor, None);
        let want: Vec<Execution> = want.iter().map(|e| (*e).clone()).collect();
        assert_eq!(page.items, want, "{filter:?}");
    };
    let none = ExecutionFilter::default();
    expect(none.clone(), &[&c, &b, &a]).await;
    let queued = ExecutionFilter {
        status: Some(Status::Queued),
        ..none.clone()
    };
    expect(queued, &[&a]).await;
    let alpha = ExecutionFilter {
        workflow_id: Some("alpha".parse().unwrap()),
        ..none.clone()
    };
    expect(alpha.clone(), &[&c, &a]).await;
    let done_alpha = ExecutionFilter {
        status: Some(Status::Succeeded),
        ..alpha
    };
    expect(done_alpha, &[&c]).await;
    let after = |at| ExecutionFilter {
        created_after: Some(at),
        ..none.clone()
    };
    let before = |at| ExecutionFilter {
        created_before: Some(at),
        ..none.clone()
    };
    expect(after(t0), &[&c, &b]).await;
    // Bounds are strict to the nanosecond.
    let just_before = t0.checked_sub(SignedDuration::from_nanos(1)).unwrap();
    expect(after(just_before), &[&c, &b, &a]).await;
    expect(before(later(t0, 2)), &[&b, &a]).await;
    let between = ExecutionFilter {
        created_after: Some(t0),
        ..before(later(t0, 2))
    };
    expect(between, &[&b]).await;
    let missing = ExecutionFilter {
        workflow_id: Some("gamma".parse().unwrap()),
        ..none
    };
    expect(missing, &[]).await;
}

/// Paging sees every execution once, even while new ones arrive.
pub(crate) async fn paging_is_stable(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let mut originals = Vec::new();
    for i in 0..5 {
        let exec = execution(&acme, "orders", later(t0, i));
        create(&*store, &exec).await;
        originals.push(exec.execution_id);
    }
    originals.reverse();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let filter = ExecutionFilter::default();
        let page = store
            .executions(&acme, &filter, 2, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(ids(&page.items));
        pages += 1;
        create(&*store, &execution(&acme, "orders", Timestamp::now())).await;
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, originals);
    assert_eq!(pages, 3);

    // Exactly `limit` rows left means no further page.
    let page = store
        .executions(&acme, &ExecutionFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 8);
    assert_eq!(page.next_cursor, None);
}

/// A cursor the store did not make is refused as such.
pub(crate) async fn bad_cursor(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    for cursor in ["garbage!", "", "AAAA"] {
        let result = store
            .executions(&acme, &ExecutionFilter::default(), 10, Some(cursor))
            .await;
        assert!(
            matches!(result, Err(Error::InvalidCursor(_))),
            "{cursor:?}: {result:?}"
        );
    }
}

/// The three conflict modes, and a key reused for another request.
pub(crate) async fn idempotency(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let key = |on_conflict| Idempotency {
        key: "order-17".into(),
        request_hash: [7; 32],
        on_conflict,
    };
    let submit = async |tenant: &TenantId, idempotency: Idempotency| {
        let exec = execution(tenant, "orders", Timestamp::now());
        let created = store
            .create_execution(&exec, Some(&idempotency), None)
            .await
            .unwrap();
        let stored = store.execution(tenant, &exec.execution_id).await.unwrap();
        assert_eq!(stored.is_some(), created == Created::New, "{created:?}");
        (exec, created)
    };

    let (mut first, created) = submit(&acme, key(OnConflict::ReturnExisting)).await;
    assert_eq!(created, Created::New);
    let (_, created) = submit(&acme, key(OnConflict::ReturnExisting)).await;
    assert_eq!(created, Created::Existing(Box::new(first.clone())));
    let (_, created) = submit(&acme, key(OnConflict::Fail)).await;
    assert_eq!(created, Created::Conflict(Box::new(first.clone())));
    let (_, created) = submit(&acme, key(OnConflict::FailOnRunning)).await;
    assert_eq!(created, Created::Conflict(Box::new(first.clone())));
    for mode in [
        OnConflict::ReturnExisting,
        OnConflict::Fail,
        OnConflict::FailOnRunning,
    ] {
        let reused = Idempotency {
            request_hash: [8; 32],
            ..key(mode)
        };
        assert_eq!(submit(&acme, reused).await.1, Created::KeyReused);
    }

    // Once the first has finished, `FailOnRunning` starts a new one and the
    // key follows it.
    first.enter(Status::Running, Timestamp::now());
    save(&*store, &mut first).await;
    let (_, created) = submit(&acme, key(OnConflict::FailOnRunning)).await;
    assert_eq!(created, Created::Conflict(Box::new(first.clone())));
    first.enter(Status::Failed, Timestamp::now());
    save(&*store, &mut first).await;
    let (_, created) = submit(&acme, key(OnConflict::Fail)).await;
    assert_eq!(created, Created::Conflict(Box::new(first.clone())));
    let (second, created) = submit(&acme, key(OnConflict::FailOnRunning)).await;
    assert_eq!(created, Created::New);
    let (_, created) = submit(&acme, key(OnConflict::ReturnExisting)).await;
    assert_eq!(created, Created::Existing(Box::new(second)));

    // Keys belong to a tenant.
    assert_eq!(submit(&other, key(OnConflict::Fail)).await.1, Created::New);
    let page = store
        .executions(&acme, &ExecutionFilter::default(), 100, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
}

/// Concurrent identical requests create exactly one execution.
pub(crate) async fn concurrent_idempotent_creates(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let key = Idempotency {
        key: "same".into(),
        request_hash: [1; 32],
        on_conflict: OnConflict::ReturnExisting,
    };
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (store, key) = (Arc::clone(&store), key.clone());
            let exec = execution(&acme, "orders", Timestamp::now());
            tokio::spawn(async move {
                let created = store
                    .create_execution(&exec, Some(&key), None)
                    .await
                    .unwrap();
                (exec.execution_id, created)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut returned = HashSet::new();
    for task in tasks {
        match task.await.unwrap() {
            (id, Created::New) => winners.push(id),
            (_, Created::Existing(e)) => {
                returned.insert(e.execution_id);
            }
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert!(returned.len() <= 1 && returned.iter().all(|id| *id == winners[0]));
    let page = store
        .executions(&acme, &ExecutionFilter::default(), 100, None)
        .await
        .unwrap();
    assert_eq!(ids(&page.items), winners);
}

//! The rules of the work the store owns: claims, leases, fencing and
//! parking (the inbox's rules are in `events`). Time is passed in
//! explicitly, so every rule is checked at exact instants rather than by
//! sleeping.

use serde_json::json;

use super::{Harness, create, execution, ids, later, new_tenant};
use crate::model::{EventKind, Execution, NewEvent, NodeId, Status, Timestamp};
use crate::store::{
    Commit, Created, Error, Fairness, Held, Idempotency, Lease, Next, OnConflict, Sent, Store,
};

pub(super) fn node(name: &str) -> NodeId {
    NodeId::new_unchecked(name)
}

pub(crate) fn lease(owner: &str, until: Timestamp) -> Lease {
    Lease {
        owner: node(owner),
        until,
    }
}

pub(super) fn event(kind: EventKind, at: Timestamp, key: Option<&str>) -> NewEvent {
    NewEvent {
        kind,
        name: Some("approval".into()),
        // Parsed from text so that the number keeps its exact digits.
        payload: Some(serde_json::from_str(r#"{"ok": true, "n": 12.50}"#).expect("JSON")),
        idempotency_key: key.map(str::to_owned),
        at,
    }
}

pub(super) async fn commit(
    store: &dyn Store,
    exec: &Execution,
    owner: &str,
    consumed: u64,
    next: Next,
) -> Result<u64, Error> {
    store
        .commit_execution(Commit {
            deliveries: &[],
            execution: exec,
            version: exec.version,
            owner: &node(owner),
            consumed,
            next,
        })
        .await
}

/// Due executions are claimed earliest `wake_at` first, in batches of at
/// most `limit`, each once; the claim bumps the version.
pub(crate) async fn claim_order(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let third = execution(&acme, "orders", later(t0, 2));
    let first = execution(&acme, "orders", t0);
    let second = execution(&acme, "orders", later(t0, 1));
    let not_yet = execution(&acme, "orders", later(t0, 100));
    for e in [&third, &first, &second, &not_yet] {
        create(&*store, e).await;
    }
    let now = later(t0, 10);
    let a = lease("a", later(now, 5));
    let batch = store.claim_due(&a, now, 2).await.unwrap();
    assert_eq!(
        ids(&batch),
        [first.execution_id.clone(), second.execution_id.clone()]
    );
    assert!(batch.iter().all(|e| e.version == 2), "{batch:?}");
    let rest = store.claim_due(&a, now, 10).await.unwrap();
    assert_eq!(ids(&rest), vec![third.execution_id.clone()]);
    assert!(store.claim_due(&a, now, 10).await.unwrap().is_empty());
    // The one due later is claimed once its time comes.
    let late = store.claim_due(&a, later(t0, 100), 10).await.unwrap();
    assert_eq!(ids(&late), vec![not_yet.execution_id.clone()]);
}

/// While a lease is live nobody else claims the execution, in a batch or
/// by id, and the holder does not claim it twice.
pub(crate) async fn one_owner_at_a_time(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let exec = execution(&acme, "orders", t0);
    create(&*store, &exec).await;
    let until = later(t0, 5);
    let claimed = store.claim_due(&lease("a", until), t0, 10).await.unwrap();
    assert_eq!(ids(&claimed), vec![exec.execution_id.clone()]);
    let just_before = later(t0, 4);
    for owner in ["a", "b"] {
        let l = lease(owner, later(just_before, 5));
        assert!(
            store
                .claim_due(&l, just_before, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .claim_execution(&l, just_before, &acme, &exec.execution_id)
                .await
                .unwrap(),
            None
        );
    }
    // Nothing else is due, so the next due time is the lease's end.
    assert_eq!(
        store.next_wake_at(&node("b")).await.unwrap(),
        Some(until),
        "another owner may take it when the lease lapses"
    );
    assert_eq!(store.next_wake_at(&node("a")).await.unwrap(), None);
}

/// A lease that lapses is claimed by another owner; from then on the first
/// owner's commits and renewals are refused.
pub(crate) async fn a_lapsed_lease_is_taken_over(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let exec = execution(&acme, "orders", t0);
    create(&*store, &exec).await;
    let mut mine = store
        .claim_due(&lease("a", later(t0, 1)), t0, 1)
        .await
        .unwrap()
        .pop()
        .expect("claimed");
    let t2 = later(t0, 2);
    let mut theirs = store
        .claim_due(&lease("b", later(t2, 5)), t2, 1)
        .await
        .unwrap()
        .pop()
        .expect("taken over");
    assert!(theirs.version > mine.version);

    mine.enter(Status::Running, t2);
    let refused = commit(
        &*store,
        &mine,
        "a",
        0,
        Next::Hold {
            until: later(t2, 5),
        },
    )
    .await;
    assert!(matches!(refused, Err(Error::LeaseLost(ref id)) if *id == exec.execution_id));
    let renewed = store
        .renew_leases(
            &lease("a", later(t2, 5)),
            std::slice::from_ref(&exec.execution_id),
        )
        .await
        .unwrap();
    assert!(renewed.is_empty());

    theirs.enter(Status::Running, t2);
    theirs.version = commit(
        &*store,
        &theirs,
        "b",
        0,
        Next::Hold {
            until: later(t2, 5),
        },
    )
    .await
    .unwrap();
    let stored = store.execution(&acme, &exec.execution_id).await.unwrap();
    assert_eq!(stored, Some(theirs));
}

/// A commit with a version older than the stored one is refused, even from
/// the owner, and changes nothing.
pub(crate) async fn a_stale_commit_is_refused(h: &dyn Harness) {
    let store = h.open().await;
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
    let stale = held.clone();
    held.enter(Status::Running, t0);
    let hold = Next::Hold {
        until: later(t0, 60),
    };
    held.version = commit(&*store, &held, "a", 0, hold).await.unwrap();
    let mut late = stale.clone();
    late.custom_data = Some(json!({"late": true}));
    let refused = commit(&*store, &late, "a", 0, hold).await;
    assert!(matches!(refused, Err(Error::LeaseLost(_))), "{refused:?}");
    // Nor may a terminal state be committed in another's name.
    let mut done = held.clone();
    done.enter(Status::Succeeded, t0);
    assert!(matches!(
        commit(&*store, &done, "b", 0, Next::Finish).await,
        Err(Error::LeaseLost(_))
    ));
    assert_eq!(
        store.execution(&acme, &exec.execution_id).await.unwrap(),
        Some(held)
    );
}

/// A parked execution is held by nobody and is due again at `wake_at`.
pub(crate) async fn parking_releases_until_wake_at(h: &dyn Harness) {
    let store = h.open().await;
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
    held.enter(Status::Running, t0);
    let wake_at = later(t0, 600);
    held.version = commit(&*store, &held, "a", 0, Next::Park { wake_at })
        .await
        .unwrap();
    assert_eq!(store.next_wake_at(&node("a")).await.unwrap(), Some(wake_at));
    // Released: the former holder's commits are refused.
    assert!(matches!(
        commit(
            &*store,
            &held,
            "a",
            0,
            Next::Hold {
                until: later(t0, 60)
            }
        )
        .await,
        Err(Error::LeaseLost(_))
    ));
    let b = lease("b", later(wake_at, 60));
    assert!(
        store
            .claim_due(&b, later(t0, 599), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let woken = store.claim_due(&b, wake_at, 10).await.unwrap();
    assert_eq!(woken.len(), 1);
    assert_eq!(woken[0].status, Status::Running);
    assert_eq!(woken[0].history, held.history);
}

/// Renewing extends a live lease past its first expiry, and tells the
/// holder which executions have events waiting.
pub(crate) async fn renewal_keeps_the_lease(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let quiet = execution(&acme, "orders", t0);
    let told = execution(&acme, "orders", t0);
    create(&*store, &quiet).await;
    create(&*store, &told).await;
    let claimed = store
        .claim_due(&lease("a", later(t0, 5)), t0, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let sent = store
        .send_event(
            &acme,
            &told.execution_id,
            &event(EventKind::Cancel, later(t0, 1), None),
        )
        .await
        .unwrap();
    assert!(matches!(sent, Sent::Stored(_)), "{sent:?}");
    let both = [quiet.execution_id.clone(), told.execution_id.clone()];
    let mut renewed = store
        .renew_leases(&lease("a", later(t0, 20)), &both)
        .await
        .unwrap();
    renewed.sort_by(|x, y| x.id.cmp(&y.id));
    let mut expected = vec![
        Held {
            id: quiet.execution_id.clone(),
            has_events: false,
        },
        Held {
            id: told.execution_id.clone(),
            has_events: true,
        },
    ];
    expected.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(renewed, expected);
    // Past the first expiry, the renewed leases still keep others out.
    let b = lease("b", later(t0, 60));
    assert!(
        store
            .claim_due(&b, later(t0, 10), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.claim_due(&b, later(t0, 21), 10).await.unwrap().len(),
        2
    );
}

/// Releasing an owner's leases (a restart of that owner) makes its
/// executions due at once for anyone, and touches nobody else's.
pub(crate) async fn released_leases_are_due(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let a_exec = execution(&acme, "orders", t0);
    let b_exec = execution(&acme, "orders", later(t0, 1));
    create(&*store, &a_exec).await;
    create(&*store, &b_exec).await;
    store
        .claim_due(&lease("a", later(t0, 60)), t0, 1)
        .await
        .unwrap();
    store
        .claim_due(&lease("b", later(t0, 60)), later(t0, 1), 1)
        .await
        .unwrap();
    assert_eq!(
        store
            .release_leases(&node("a"), later(t0, 2))
            .await
            .unwrap(),
        1
    );
    let c = lease("c", later(t0, 60));
    let taken = store.claim_due(&c, later(t0, 2), 10).await.unwrap();
    assert_eq!(ids(&taken), vec![a_exec.execution_id.clone()]);
}

/// A terminal commit takes the execution out of the claim path for good.
pub(crate) async fn finished_executions_leave_the_claim_path(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let exec = execution(&acme, "orders", t0);
    create(&*store, &exec).await;
    let mut held = store
        .claim_due(&lease("a", later(t0, 1)), t0, 1)
        .await
        .unwrap()
        .pop()
        .expect("claimed");
    held.enter(Status::Succeeded, t0);
    // A terminal status goes with `Finish`, and only with it.
    assert!(
        commit(
            &*store,
            &held,
            "a",
            0,
            Next::Hold {
                until: later(t0, 1)
            }
        )
        .await
        .is_err()
    );
    held.version = commit(&*store, &held, "a", 0, Next::Finish).await.unwrap();
    let far = later(t0, 86_400);
    assert!(
        store
            .claim_due(&lease("b", far), far, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_wake_at(&node("b")).await.unwrap(), None);
    assert_eq!(
        store
            .claim_execution(&lease("b", far), far, &acme, &exec.execution_id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .send_event(
                &acme,
                &exec.execution_id,
                &event(EventKind::Cancel, far, None)
            )
            .await
            .unwrap(),
        Sent::Finished(Status::Succeeded)
    );
    assert_eq!(
        store.execution(&acme, &exec.execution_id).await.unwrap(),
        Some(held)
    );
}

/// An execution created with a lease is held by its creator at version 1
/// and claimed by nobody else until the lease lapses.
pub(crate) async fn a_new_execution_can_be_held(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let mut exec = execution(&acme, "orders", t0);
    let a = lease("a", later(t0, 5));
    assert_eq!(
        store.create_execution(&exec, None, Some(&a)).await.unwrap(),
        crate::store::Created::New
    );
    let b = lease("b", later(t0, 60));
    assert!(
        store
            .claim_due(&b, later(t0, 4), 10)
            .await
            .unwrap()
            .is_empty()
    );
    exec.enter(Status::Running, t0);
    exec.version = commit(
        &*store,
        &exec,
        "a",
        0,
        Next::Hold {
            until: later(t0, 5),
        },
    )
    .await
    .expect("the creator holds it at version 1");
    assert_eq!(exec.version, 2);
    let taken = store.claim_due(&b, later(t0, 6), 10).await.unwrap();
    assert_eq!(ids(&taken), vec![exec.execution_id.clone()]);
}

/// One execution can be claimed by id whether due or not, unless another
/// owner's lease on it is live.
pub(crate) async fn claiming_one_execution(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let t0 = Timestamp::now();
    let exec = execution(&acme, "orders", later(t0, 3600));
    create(&*store, &exec).await;
    let id = &exec.execution_id;
    let a = lease("a", later(t0, 5));
    assert_eq!(
        store.claim_execution(&a, t0, &other, id).await.unwrap(),
        None,
        "another tenant's execution is not found"
    );
    let claimed = store.claim_execution(&a, t0, &acme, id).await.unwrap();
    assert_eq!(claimed.map(|e| e.version), Some(2));
    let b = lease("b", later(t0, 60));
    assert_eq!(
        store
            .claim_execution(&b, later(t0, 4), &acme, id)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .claim_execution(&b, later(t0, 6), &acme, id)
            .await
            .unwrap()
            .is_some()
    );
}

/// Nodes register with their first heartbeat and are listed by id with
/// the leases they hold at the time asked (a lapsed lease is not held);
/// a new life replaces `started_at`; silent nodes can be forgotten.
pub(crate) async fn nodes_and_their_leases(h: &dyn Harness) {
    use crate::store::{Heartbeat, NodeRecord};
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let beat = |name: &'static str, started_at, claim_work, at| {
        let store = store.clone();
        async move {
            store
                .heartbeat(&Heartbeat {
                    node: &node(name),
                    started_at,
                    claim_work,
                    at,
                })
                .await
                .expect("the heartbeat is stored");
        }
    };
    assert_eq!(store.nodes(t0).await.unwrap(), Vec::<NodeRecord>::new());
    beat("b", t0, false, t0).await;
    beat("a", t0, true, later(t0, 1)).await;
    for n in 0..3 {
        let exec = execution(&acme, "orders", later(t0, n));
        store
            .create_execution(&exec, None, Some(&lease("a", later(t0, 10 + n))))
            .await
            .unwrap();
    }
    let listed = store.nodes(later(t0, 11)).await.unwrap();
    assert_eq!(
        listed,
        vec![
            NodeRecord {
                node_id: node("a"),
                started_at: t0,
                last_heartbeat_at: later(t0, 1),
                claim_work: true,
                // The first lease lapsed at t0 + 10.
                executions_held: 2,
            },
            NodeRecord {
                node_id: node("b"),
                started_at: t0,
                last_heartbeat_at: t0,
                claim_work: false,
                executions_held: 0,
            },
        ]
    );
    assert_eq!(
        store.nodes(later(t0, 13)).await.unwrap()[0].executions_held,
        0
    );
    // A restart: a new life of "a".
    beat("a", later(t0, 20), true, later(t0, 20)).await;
    let a = store.nodes(later(t0, 20)).await.unwrap().remove(0);
    assert_eq!(
        (a.started_at, a.last_heartbeat_at),
        (later(t0, 20), later(t0, 20))
    );
    assert_eq!(store.forget_nodes(later(t0, 5)).await.unwrap(), 1);
    let left: Vec<NodeId> = store
        .nodes(later(t0, 20))
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(left, vec![node("a")]);
}

/// A claim round takes what `claim_due` would, says which of the taken
/// executions have events waiting, and when the next one is due for this
/// owner (what `next_wake_at` answers after the claim), also when it takes
/// nothing.
pub(crate) async fn a_claim_round_says_what_it_took_and_what_comes_next(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let quiet = execution(&acme, "orders", t0);
    let signalled = execution(&acme, "orders", later(t0, 1));
    let later_one = execution(&acme, "orders", later(t0, 50));
    let elsewhere = execution(&acme, "orders", later(t0, 2));
    for e in [&quiet, &signalled, &later_one, &elsewhere] {
        create(&*store, e).await;
    }
    // Another owner holds one until t0 + 30.
    let taken = store
        .claim_execution(
            &lease("b", later(t0, 30)),
            t0,
            &acme,
            &elsewhere.execution_id,
        )
        .await
        .unwrap();
    assert!(taken.is_some());
    let sent = store
        .send_event(
            &acme,
            &signalled.execution_id,
            &event(EventKind::Signal, later(t0, 1), None),
        )
        .await
        .unwrap();
    assert!(matches!(sent, Sent::Stored(_)), "{sent:?}");

    let now = later(t0, 10);
    let a = lease("a", later(now, 5));
    // A batch smaller than what is due: the rest is due now.
    let first = store
        .claim_round(&a, now, 1, &Fairness::default())
        .await
        .unwrap();
    let took: Vec<_> = first
        .claimed
        .iter()
        .map(|c| {
            (
                c.execution.execution_id.clone(),
                c.has_events,
                c.execution.version,
            )
        })
        .collect();
    assert_eq!(took, vec![(quiet.execution_id.clone(), false, 2)]);
    assert_eq!(first.next_wake_at, Some(later(t0, 1)));

    let second = store
        .claim_round(&a, now, 10, &Fairness::default())
        .await
        .unwrap();
    let took: Vec<_> = second
        .claimed
        .iter()
        .map(|c| (c.execution.execution_id.clone(), c.has_events))
        .collect();
    assert_eq!(took, vec![(signalled.execution_id.clone(), true)]);
    // Not the ones "a" holds now: the other owner's lease, then the later
    // one.
    assert_eq!(second.next_wake_at, Some(later(t0, 30)));
    assert_eq!(
        second.next_wake_at,
        store.next_wake_at(&node("a")).await.unwrap()
    );

    let empty = store
        .claim_round(&a, now, 10, &Fairness::default())
        .await
        .unwrap();
    assert!(empty.claimed.is_empty());
    assert_eq!(empty.next_wake_at, Some(later(t0, 30)));
    // Past the other lease, "a" takes it over; then only the later one.
    let over = store
        .claim_round(&a, later(t0, 31), 10, &Fairness::default())
        .await
        .unwrap();
    assert_eq!(over.claimed.len(), 1);
    assert_eq!(
        over.claimed[0].execution.execution_id,
        elsewhere.execution_id
    );
    assert_eq!(over.next_wake_at, Some(later(t0, 50)));
}

/// The retention sweep's deletion: only executions that finished before the
/// cutoff go, oldest first and no more than the limit, with the
/// idempotency keys that point at them; unfinished executions and one a
/// resume reopened stay.
pub(crate) async fn retention_deletes_what_finished_before_the_cutoff(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let unfinished = execution(&acme, "orders", later(t0, -1000));
    create(&*store, &unfinished).await;
    let key = Idempotency {
        key: "order-1".into(),
        request_hash: [1; 32],
        on_conflict: OnConflict::ReturnExisting,
    };
    let until = later(t0, 1000);
    let finish = async |status: Status, at: Timestamp, idempotency: Option<&Idempotency>| {
        let exec = execution(&acme, "orders", later(t0, -500));
        let created = store.create_execution(&exec, idempotency, None).await;
        assert_eq!(created.unwrap(), Created::New);
        let mut held = store
            .claim_execution(&lease("a", until), t0, &acme, &exec.execution_id)
            .await
            .unwrap()
            .expect("claimed");
        held.enter(status, at);
        held.version = commit(&*store, &held, "a", 0, Next::Finish).await.unwrap();
        held
    };
    let first = finish(Status::Succeeded, t0, Some(&key)).await;
    let second = finish(Status::Failed, later(t0, 10), None).await;
    let third = finish(Status::Succeeded, later(t0, 100), None).await;
    let reopened = finish(Status::Failed, t0, None).await;
    let resume = event(EventKind::Resume, later(t0, 1), None);
    let sent = store
        .send_event(&acme, &reopened.execution_id, &resume)
        .await
        .unwrap();
    assert!(matches!(sent, Sent::Stored(_)), "{sent:?}");

    let gone = async |exec: &Execution| {
        store
            .execution(&acme, &exec.execution_id)
            .await
            .unwrap()
            .is_none()
    };
    let cutoff = later(t0, 50);
    assert_eq!(store.purge_finished(cutoff, 1).await.unwrap(), 1);
    assert!(gone(&first).await, "the oldest goes first");
    assert!(!gone(&second).await, "one at a time");
    assert_eq!(store.purge_finished(cutoff, 10).await.unwrap(), 1);
    assert!(gone(&second).await);
    assert_eq!(store.purge_finished(cutoff, 10).await.unwrap(), 0);
    for kept in [&third, &unfinished, &reopened] {
        assert!(!gone(kept).await, "{}", kept.execution_id);
    }
    // The key went with its execution: the same request starts a new one.
    let again = execution(&acme, "orders", t0);
    let created = store.create_execution(&again, Some(&key), None).await;
    assert_eq!(created.unwrap(), Created::New);

    let far = later(t0, 1_000_000);
    assert_eq!(store.purge_finished(far, 10).await.unwrap(), 1);
    assert!(gone(&third).await);
    for kept in [&unfinished, &reopened, &again] {
        assert!(!gone(kept).await, "{}", kept.execution_id);
    }
}

//! The rules of the execution's inbox: events kept in order and once per
//! key, events making a parked execution due, a park that an unconsumed
//! event defeats, a resume reopening a restartable execution, and a
//! postponed execution's due time.

use super::work::{commit, event, lease, node};
use super::{Harness, create, execution, ids, later, new_tenant};
use crate::model::{EventKind, ExecutionId, Status, Timestamp};
use crate::store::{Next, Sent};

/// Events are kept in order with their payloads, a repeated idempotency key
/// stores nothing (even after the first was consumed), consuming deletes
/// up to a sequence number, and finishing empties the inbox.
pub(crate) async fn the_inbox_keeps_events_in_order(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let t0 = Timestamp::now();
    let exec = execution(&acme, "orders", t0);
    create(&*store, &exec).await;
    let id = &exec.execution_id;
    let send = async |key: Option<&str>, at| {
        store
            .send_event(&acme, id, &event(EventKind::Cancel, at, key))
            .await
            .unwrap()
    };
    let Sent::Stored(first) = send(Some("k1"), later(t0, 1)).await else {
        panic!("stored")
    };
    let Sent::Stored(second) = send(None, later(t0, 2)).await else {
        panic!("stored")
    };
    assert!(second > first);
    assert_eq!(send(Some("k1"), later(t0, 3)).await, Sent::Duplicate(first));
    assert_eq!(
        store
            .send_event(&other, id, &event(EventKind::Cancel, t0, None))
            .await
            .unwrap(),
        Sent::NotFound
    );
    assert_eq!(
        store
            .send_event(
                &acme,
                &ExecutionId::generate(),
                &event(EventKind::Cancel, t0, None)
            )
            .await
            .unwrap(),
        Sent::NotFound
    );
    let events = store.events(id, 0).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [first, second]
    );
    assert_eq!(events[0].kind, EventKind::Cancel);
    assert_eq!(events[0].name.as_deref(), Some("approval"));
    assert_eq!(
        events[0]
            .payload
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some(r#"{"n":12.50,"ok":true}"#)
    );
    assert_eq!(events[0].at, later(t0, 1));
    assert_eq!(store.events(id, first).await.unwrap().len(), 1);

    let mut held = store
        .claim_due(&lease("a", later(t0, 60)), later(t0, 3), 1)
        .await
        .unwrap()
        .pop()
        .expect("claimed");
    held.version = commit(
        &*store,
        &held,
        "a",
        first,
        Next::Hold {
            until: later(t0, 60),
        },
    )
    .await
    .unwrap();
    assert_eq!(ids_of(&store.events(id, 0).await.unwrap()), [second]);
    // A consumed event's key still counts.
    assert_eq!(send(Some("k1"), later(t0, 4)).await, Sent::Duplicate(first));
    held.enter(Status::Cancelled, later(t0, 5));
    commit(&*store, &held, "a", 0, Next::Finish).await.unwrap();
    assert!(store.events(id, 0).await.unwrap().is_empty());
    // A retried delivery after the execution finished is still the same
    // delivery; a new one is refused.
    assert_eq!(send(Some("k1"), later(t0, 6)).await, Sent::Duplicate(first));
    assert_eq!(
        send(Some("k9"), later(t0, 6)).await,
        Sent::Finished(Status::Cancelled)
    );
}

fn ids_of(events: &[crate::model::Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// An event makes a parked execution due at the event's time.
pub(crate) async fn events_make_a_parked_execution_due(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let exec = execution(&acme, "orders", t0);
    create(&*store, &exec).await;
    let held = store
        .claim_due(&lease("a", later(t0, 60)), t0, 1)
        .await
        .unwrap()
        .pop()
        .expect("claimed");
    commit(
        &*store,
        &held,
        "a",
        0,
        Next::Park {
            wake_at: later(t0, 3600),
        },
    )
    .await
    .unwrap();
    let b = lease("b", later(t0, 600));
    assert!(
        store
            .claim_due(&b, later(t0, 10), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .send_event(
            &acme,
            &exec.execution_id,
            &event(EventKind::Cancel, later(t0, 10), None),
        )
        .await
        .unwrap();
    assert_eq!(
        store.next_wake_at(&node("b")).await.unwrap(),
        Some(later(t0, 10))
    );
    let woken = store.claim_due(&b, later(t0, 10), 10).await.unwrap();
    assert_eq!(ids(&woken), vec![exec.execution_id.clone()]);
}

/// Parking with an event the commit did not consume leaves the execution
/// due at once: an event that arrives between "check" and "park" is never
/// missed.
pub(crate) async fn an_unconsumed_event_defeats_a_park(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let exec = execution(&acme, "orders", t0);
    create(&*store, &exec).await;
    let held = store
        .claim_due(&lease("a", later(t0, 60)), t0, 1)
        .await
        .unwrap()
        .pop()
        .expect("claimed");
    // Sent while held: the holder would be told; the row stays held.
    store
        .send_event(
            &acme,
            &exec.execution_id,
            &event(EventKind::Cancel, later(t0, 2), None),
        )
        .await
        .unwrap();
    commit(
        &*store,
        &held,
        "a",
        0,
        Next::Park {
            wake_at: later(t0, 3600),
        },
    )
    .await
    .unwrap();
    let b = lease("b", later(t0, 600));
    let woken = store.claim_due(&b, later(t0, 2), 10).await.unwrap();
    assert_eq!(ids(&woken), vec![exec.execution_id.clone()]);
}

/// A resume reopens an execution that ended failed, cancelled or timed
/// out: the event is stored, the execution is due at the event's time and
/// claimed with the event in its inbox. Other events for it, and a resume
/// of an execution that succeeded, are refused.
pub(crate) async fn a_resume_reopens_a_restartable_execution(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let mut ended = Vec::new();
    for (name, status) in [("failed", Status::Failed), ("succeeded", Status::Succeeded)] {
        let exec = execution(&acme, name, t0);
        create(&*store, &exec).await;
        let mut held = store
            .claim_execution(&lease("a", later(t0, 5)), t0, &acme, &exec.execution_id)
            .await
            .unwrap()
            .expect("claimed");
        held.enter(status, t0);
        held.version = commit(&*store, &held, "a", 0, Next::Finish).await.unwrap();
        ended.push(held);
    }
    let (failed, succeeded) = (&ended[0], &ended[1]);
    let t1 = later(t0, 10);
    assert_eq!(
        store
            .send_event(
                &acme,
                &failed.execution_id,
                &event(EventKind::Signal, t1, None)
            )
            .await
            .unwrap(),
        Sent::Finished(Status::Failed)
    );
    assert_eq!(
        store
            .send_event(
                &acme,
                &succeeded.execution_id,
                &event(EventKind::Resume, t1, None)
            )
            .await
            .unwrap(),
        Sent::Finished(Status::Succeeded)
    );
    assert!(
        store
            .claim_due(&lease("b", later(t1, 5)), later(t1, 1), 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing is due before the resume"
    );
    let Sent::Stored(seq) = store
        .send_event(
            &acme,
            &failed.execution_id,
            &event(EventKind::Resume, t1, None),
        )
        .await
        .unwrap()
    else {
        panic!("the resume of a failed execution is stored");
    };
    assert_eq!(store.next_wake_at(&node("b")).await.unwrap(), Some(t1));
    let taken = store
        .claim_due(&lease("b", later(t1, 5)), later(t1, 1), 10)
        .await
        .unwrap();
    assert_eq!(ids(&taken), vec![failed.execution_id.clone()]);
    assert_eq!(
        taken[0].status,
        Status::Failed,
        "the driver restarts it, not the store"
    );
    let events = store.events(&failed.execution_id, 0).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].seq, events[0].kind), (seq, EventKind::Resume));
    // The restarted execution commits like any claimed one.
    let mut restarted = taken[0].clone();
    restarted.enter(Status::Running, t1);
    let v = commit(
        &*store,
        &restarted,
        "b",
        seq,
        Next::Hold {
            until: later(t1, 5),
        },
    )
    .await
    .unwrap();
    assert!(v > restarted.version);
    assert!(
        store
            .events(&failed.execution_id, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A postponed execution is due at its `scheduled_for`, not at its
/// creation; a signal for it waits (it does not make it due), while a
/// cancel or a resume does.
pub(crate) async fn a_postponed_execution_is_due_at_its_time(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let postponed = |name: &str| {
        let mut e = execution(&acme, name, t0);
        e.status = Status::Scheduled;
        e.history.clear();
        e.enter(Status::Scheduled, t0);
        e.scheduled_for = Some(later(t0, 100));
        e
    };
    let waits = postponed("waits");
    let cancelled = postponed("cancelled");
    create(&*store, &waits).await;
    create(&*store, &cancelled).await;
    let b = lease("b", later(t0, 500));
    assert!(
        store
            .claim_due(&b, later(t0, 50), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.next_wake_at(&node("b")).await.unwrap(),
        Some(later(t0, 100))
    );
    let sent = store
        .send_event(
            &acme,
            &waits.execution_id,
            &event(EventKind::Signal, later(t0, 10), None),
        )
        .await
        .unwrap();
    assert!(matches!(sent, Sent::Stored(_)), "{sent:?}");
    assert!(
        store
            .claim_due(&b, later(t0, 50), 10)
            .await
            .unwrap()
            .is_empty(),
        "a signal waits for the run to start"
    );
    let sent = store
        .send_event(
            &acme,
            &cancelled.execution_id,
            &event(EventKind::Cancel, later(t0, 20), None),
        )
        .await
        .unwrap();
    assert!(matches!(sent, Sent::Stored(_)), "{sent:?}");
    let taken = store.claim_due(&b, later(t0, 50), 10).await.unwrap();
    assert_eq!(ids(&taken), vec![cancelled.execution_id.clone()]);
    assert_eq!(taken[0].scheduled_for, Some(later(t0, 100)));
    let taken = store.claim_due(&b, later(t0, 100), 10).await.unwrap();
    assert_eq!(ids(&taken), vec![waits.execution_id.clone()]);
    assert_eq!(store.events(&waits.execution_id, 0).await.unwrap().len(), 1);
}

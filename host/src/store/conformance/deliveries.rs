//! The outbox's rules: deliveries are stored only with the commit that
//! reports them, claimed in order per execution under a lease that lapses,
//! recorded only by their holder, redelivered by hand, and deleted with
//! their execution or tenant; and tenants' signing secrets are written
//! compare-and-set.

use super::work::{commit, lease, node};
use super::{Harness, create, execution, later, new_tenant};
use crate::model::{
    DeliveryAttempt, DeliveryStatus, EventType, Execution, NewDelivery, Status, Timestamp,
    WebhookSecret,
};
use crate::store::{Commit, DeliveryNext, Error, Next, Store};

fn delivery(exec: &Execution, event: EventType, at: Timestamp) -> NewDelivery {
    NewDelivery {
        delivery_id: NewDelivery::generate_id(),
        execution_id: exec.execution_id.clone(),
        tenant_id: exec.tenant_id.clone(),
        event,
        step: (event == EventType::StepFinished).then(|| "a".to_owned()),
        url: "https://example.com/hook".into(),
        body: format!(r#"{{"type":"{}","n":12.50}}"#, event.as_str()),
        created_at: at,
        due_at: at,
    }
}

fn attempt(at: Timestamp, status: u16) -> DeliveryAttempt {
    DeliveryAttempt {
        at,
        response_status: Some(status),
        response_body: Some("ok".into()),
        error: None,
        duration_ms: 1.5,
    }
}

/// Claims `exec` for `owner` and commits it with `deliveries`.
async fn commit_with(
    store: &dyn Store,
    exec: &mut Execution,
    owner: &str,
    at: Timestamp,
    deliveries: &[NewDelivery],
) -> Result<u64, Error> {
    let claimed = store
        .claim_execution(
            &lease(owner, later(at, 60)),
            at,
            &exec.tenant_id,
            &exec.execution_id,
        )
        .await
        .unwrap()
        .expect("claimable");
    exec.version = claimed.version;
    let version = store
        .commit_execution(Commit {
            execution: exec,
            version: exec.version,
            owner: &node(owner),
            consumed: 0,
            next: Next::Hold {
                until: later(at, 60),
            },
            deliveries,
        })
        .await?;
    exec.version = version;
    Ok(version)
}

/// A commit stores its deliveries; a refused commit stores none. One
/// execution's deliveries are claimed one at a time, in order; other
/// executions' go beside them.
pub(crate) async fn deliveries_are_claimed_in_order_per_execution(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let mut one = execution(&acme, "orders", t0);
    let mut two = execution(&acme, "orders", t0);
    for e in [&one, &two] {
        create(&*store, e).await;
    }
    let first = delivery(&one, EventType::ExecutionStarted, t0);
    let second = delivery(&one, EventType::ExecutionFinished, t0);
    let other = delivery(&two, EventType::ExecutionFinished, later(t0, 1));
    commit_with(&*store, &mut one, "a", t0, &[first.clone(), second.clone()])
        .await
        .unwrap();
    commit_with(&*store, &mut two, "a", t0, std::slice::from_ref(&other))
        .await
        .unwrap();
    // A stale commit stores nothing.
    let stale = delivery(&one, EventType::StepFinished, t0);
    let refused = store
        .commit_execution(Commit {
            execution: &one,
            version: 1,
            owner: &node("a"),
            consumed: 0,
            next: Next::Hold {
                until: later(t0, 60),
            },
            deliveries: std::slice::from_ref(&stale),
        })
        .await;
    assert!(matches!(refused, Err(Error::LeaseLost(_))), "{refused:?}");

    let listed = store.deliveries(&one.execution_id).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(
        ids,
        [first.delivery_id.as_str(), second.delivery_id.as_str()]
    );
    assert!(listed.iter().all(|d| d.status == DeliveryStatus::Pending));
    assert_eq!(
        listed[0].webhook_id,
        NewDelivery::webhook_id(&first.delivery_id)
    );
    assert_eq!(listed[0].next_attempt_at, Some(t0));
    assert_eq!(store.next_delivery_at().await.unwrap(), Some(t0));

    let now = later(t0, 2);
    let claimed = store
        .claim_deliveries(&lease("a", later(now, 30)), now, 10)
        .await
        .unwrap();
    let got: Vec<&str> = claimed.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(
        got,
        [first.delivery_id.as_str(), other.delivery_id.as_str()]
    );
    assert_eq!(
        claimed[0].body, first.body,
        "the body as stored, 12.50 included"
    );
    assert_eq!(claimed[0].attempts, 0);
    // The second of `one` waits behind the first; held ones are not
    // claimed again.
    assert!(
        store
            .claim_deliveries(&lease("b", later(now, 30)), now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Nothing is due before the claims lapse (the second is behind the
    // first).
    assert_eq!(
        store.next_delivery_at().await.unwrap(),
        Some(later(now, 30))
    );

    assert!(
        store
            .record_delivery(
                &node("a"),
                &first.delivery_id,
                &attempt(now, 200),
                DeliveryNext::Done(DeliveryStatus::Delivered)
            )
            .await
            .unwrap()
    );
    let next = store
        .claim_deliveries(&lease("a", later(now, 30)), now, 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].delivery_id, second.delivery_id);
}

/// A claim lapses and is taken over; only the holder records an attempt;
/// a retry is due at its time with its attempts kept; done ones leave the
/// queue until redelivered by hand.
pub(crate) async fn attempts_are_recorded_by_the_holder_and_retried(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let mut exec = execution(&acme, "orders", t0);
    create(&*store, &exec).await;
    let d = delivery(&exec, EventType::ExecutionFinished, t0);
    commit_with(&*store, &mut exec, "a", t0, std::slice::from_ref(&d))
        .await
        .unwrap();
    let claimed = store
        .claim_deliveries(&lease("a", later(t0, 10)), t0, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // Before the claim lapses nobody else takes it; after, "b" does.
    assert!(
        store
            .claim_deliveries(&lease("b", later(t0, 60)), later(t0, 9), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let taken = store
        .claim_deliveries(&lease("b", later(t0, 60)), later(t0, 11), 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    // "a" lost it: its record is refused and changes nothing.
    let lost = store
        .record_delivery(
            &node("a"),
            &d.delivery_id,
            &attempt(later(t0, 11), 200),
            DeliveryNext::Done(DeliveryStatus::Delivered),
        )
        .await
        .unwrap();
    assert!(!lost);
    assert!(
        store.deliveries(&exec.execution_id).await.unwrap()[0]
            .attempts
            .is_empty()
    );
    let retry_at = later(t0, 100);
    assert!(
        store
            .record_delivery(
                &node("b"),
                &d.delivery_id,
                &attempt(later(t0, 11), 500),
                DeliveryNext::Retry(retry_at)
            )
            .await
            .unwrap()
    );
    let listed = &store.deliveries(&exec.execution_id).await.unwrap()[0];
    assert_eq!(listed.status, DeliveryStatus::Pending);
    assert_eq!(listed.next_attempt_at, Some(retry_at));
    assert_eq!(listed.attempts.len(), 1);
    assert_eq!(listed.attempts[0].response_status, Some(500));
    assert_eq!(store.next_delivery_at().await.unwrap(), Some(retry_at));
    assert!(
        store
            .claim_deliveries(&lease("b", later(t0, 200)), later(t0, 99), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_deliveries(&lease("b", later(t0, 200)), retry_at, 10)
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 1);
    assert!(
        store
            .record_delivery(
                &node("b"),
                &d.delivery_id,
                &attempt(retry_at, 410),
                DeliveryNext::Done(DeliveryStatus::Gone)
            )
            .await
            .unwrap()
    );
    let listed = &store.deliveries(&exec.execution_id).await.unwrap()[0];
    assert_eq!(listed.status, DeliveryStatus::Gone);
    assert_eq!(listed.next_attempt_at, None);
    assert_eq!(listed.attempts.len(), 2);
    assert_eq!(store.next_delivery_at().await.unwrap(), None);

    // By hand: due at once, attempts kept; unknown ids and other tenants'
    // executions find nothing.
    let now = later(t0, 300);
    let other = new_tenant(&*store, "other").await;
    assert!(
        store
            .retry_delivery(&other, &exec.execution_id, &d.delivery_id, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .retry_delivery(&acme, &exec.execution_id, "dlv_nope", now)
            .await
            .unwrap()
            .is_none()
    );
    let redone = store
        .retry_delivery(&acme, &exec.execution_id, &d.delivery_id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(redone.status, DeliveryStatus::Pending);
    assert_eq!(redone.next_attempt_at, Some(now));
    assert_eq!(redone.attempts.len(), 2);
    let claimed = store
        .claim_deliveries(&lease("c", later(now, 30)), now, 10)
        .await
        .unwrap();
    assert_eq!(claimed[0].delivery_id, d.delivery_id);
}

/// Deliveries go with their execution (retention) and their tenant; a
/// tenant's signing secret is written once, then only compare-and-set.
pub(crate) async fn deliveries_and_secrets_go_with_their_owners(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let t0 = Timestamp::now();
    let mut exec = execution(&acme, "orders", t0);
    create(&*store, &exec).await;
    let d = delivery(&exec, EventType::ExecutionFinished, t0);
    commit_with(&*store, &mut exec, "a", t0, std::slice::from_ref(&d))
        .await
        .unwrap();
    exec.enter(Status::Succeeded, later(t0, 1));
    exec.version = commit(&*store, &exec, "a", 0, Next::Finish).await.unwrap();
    assert_eq!(store.purge_finished(later(t0, 2), 10).await.unwrap(), 1);
    assert!(
        store
            .deliveries(&exec.execution_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_delivery_at().await.unwrap(), None);

    assert_eq!(store.webhook_secret(&acme).await.unwrap(), None);
    let first = WebhookSecret {
        sealed: vec![1, 2, 3],
        created_at: t0,
        previous: None,
    };
    assert_eq!(
        store.put_webhook_secret(&acme, &first, None).await.unwrap(),
        first
    );
    let racer = WebhookSecret {
        sealed: vec![9],
        ..first.clone()
    };
    assert_eq!(
        store.put_webhook_secret(&acme, &racer, None).await.unwrap(),
        first,
        "a second first write keeps the first"
    );
    let rotated = WebhookSecret {
        sealed: vec![4, 5],
        created_at: later(t0, 10),
        previous: Some((vec![1, 2, 3], later(t0, 100))),
    };
    let stale = WebhookSecret {
        sealed: vec![7],
        ..rotated.clone()
    };
    assert_eq!(
        store
            .put_webhook_secret(&acme, &rotated, Some(t0))
            .await
            .unwrap(),
        rotated
    );
    assert_eq!(
        store
            .put_webhook_secret(&acme, &stale, Some(t0))
            .await
            .unwrap(),
        rotated,
        "a rotation from a secret no longer stored loses"
    );
    assert_eq!(store.webhook_secret(&acme).await.unwrap(), Some(rotated));

    let mut live = execution(&acme, "orders", t0);
    create(&*store, &live).await;
    let started = delivery(&live, EventType::ExecutionStarted, t0);
    commit_with(&*store, &mut live, "a", t0, &[started])
        .await
        .unwrap();
    assert!(store.delete_tenant(&acme).await.unwrap());
    assert!(
        store
            .deliveries(&live.execution_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.webhook_secret(&acme).await.unwrap(), None);
    assert_eq!(store.next_delivery_at().await.unwrap(), None);
}

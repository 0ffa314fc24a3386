//! The fair-claim rules: tenants' due rows interleaved by running count
//! over weight, each tenant in due order, none past its running limit, a
//! lapsed lease taken over even at the limit; and the counts behind them.

use super::work::{commit, lease};
use super::{Harness, create, execution, ids, later, new_tenant};
use crate::model::{Execution, Quotas, Timestamp};
use crate::store::{Fairness, Next, Store};

/// `n` executions of `tenant` created (and due) one second apart from `at`.
async fn due(
    store: &dyn Store,
    tenant: &crate::model::TenantId,
    at: Timestamp,
    n: i64,
) -> Vec<Execution> {
    let mut made = Vec::new();
    for i in 0..n {
        let e = execution(tenant, "w", later(at, i));
        create(store, &e).await;
        made.push(e);
    }
    made
}

/// A tenant with a backlog does not take every freed slot: the rows of
/// two tenants alternate, each tenant's in due order, even though all of
/// one tenant's are older; a weight of 3 takes three rows for each of the
/// other's.
pub(crate) async fn claims_are_shared_between_tenants(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let quiet = new_tenant(&*store, "quiet").await;
    let t0 = Timestamp::now();
    let a = due(&*store, &acme, t0, 6).await;
    let q = due(&*store, &quiet, later(t0, 10), 2).await;
    let now = later(t0, 20);
    let claimed = store
        .claim_due(&lease("a", later(now, 30)), now, 4)
        .await
        .unwrap();
    assert_eq!(
        ids(&claimed),
        ids(&[a[0].clone(), q[0].clone(), a[1].clone(), q[1].clone()]),
        "interleaved, each tenant's oldest first"
    );
    // What runs counts: acme holds 2 and quiet 2, so acme's next two go.
    let claimed = store
        .claim_due(&lease("a", later(now, 30)), now, 2)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ids(&a[2..4]));
    assert_eq!(store.running_count(&acme).await.unwrap(), 4);
    assert_eq!(store.running_count(&quiet).await.unwrap(), 2);
    // Two held and two queued of acme's: `queued` is the status, held or not.
    assert_eq!(store.queued_count(&acme).await.unwrap(), 6);

    let store = h.open().await;
    let heavy = new_tenant(&*store, "heavy").await;
    let light = new_tenant(&*store, "light").await;
    let quotas = Quotas {
        weight: Some(3),
        ..Quotas::default()
    };
    store.set_quotas(&heavy, &quotas).await.unwrap().unwrap();
    let t0 = Timestamp::now();
    let hv = due(&*store, &heavy, t0, 8).await;
    let lt = due(&*store, &light, later(t0, 10), 8).await;
    let now = later(t0, 20);
    let claimed = store
        .claim_round(&lease("a", later(now, 30)), now, 8, &Fairness::default())
        .await
        .unwrap();
    let got: Vec<_> = claimed.claimed.into_iter().map(|c| c.execution).collect();
    assert_eq!(
        ids(&got),
        ids(&[
            hv[0].clone(),
            hv[1].clone(),
            hv[2].clone(),
            lt[0].clone(),
            hv[3].clone(),
            hv[4].clone(),
            hv[5].clone(),
            lt[1].clone(),
        ]),
        "three of the weight-3 tenant's for each of the other's, in the order they start"
    );
}

/// A tenant never holds more executions than its running limit (its own,
/// else the claim's default): its other due rows wait, other tenants' do
/// not; one that parks frees a slot (waiting does not count); a lapsed
/// lease is taken over at the limit without going past it.
pub(crate) async fn a_running_limit_holds_on_claims(h: &dyn Harness) {
    let store = h.open().await;
    let capped = new_tenant(&*store, "capped").await;
    let other = new_tenant(&*store, "other").await;
    let quotas = Quotas {
        max_concurrent_executions: Some(2),
        ..Quotas::default()
    };
    store.set_quotas(&capped, &quotas).await.unwrap().unwrap();
    let t0 = Timestamp::now();
    let c = due(&*store, &capped, t0, 5).await;
    let o = due(&*store, &other, later(t0, 10), 3).await;
    let now = later(t0, 20);
    let a = lease("a", later(now, 30));
    let first = store.claim_due(&a, now, 10).await.unwrap();
    assert_eq!(
        ids(&first),
        ids(&[
            c[0].clone(),
            o[0].clone(),
            c[1].clone(),
            o[1].clone(),
            o[2].clone()
        ])
    );
    assert!(
        store.claim_due(&a, now, 10).await.unwrap().is_empty(),
        "capped at 2"
    );
    assert_eq!(store.running_count(&capped).await.unwrap(), 2);

    // One parks (a timer): the next due one of the tenant is claimed.
    let parked = first[0].clone();
    commit(
        &*store,
        &parked,
        "a",
        0,
        Next::Park {
            wake_at: later(now, 1000),
        },
    )
    .await
    .unwrap();
    let next = store.claim_due(&a, now, 10).await.unwrap();
    assert_eq!(ids(&next), ids(&c[2..3]));

    // Node a dies: node b takes over its two lapsed leases at the limit,
    // and nothing more.
    let after = later(now, 31);
    let b = lease("b", later(after, 30));
    let taken = store.claim_due(&b, after, 10).await.unwrap();
    let mut taken_ids = ids(&taken);
    taken_ids.sort();
    let mut expected = ids(&[
        c[1].clone(),
        c[2].clone(),
        o[0].clone(),
        o[1].clone(),
        o[2].clone(),
    ]);
    expected.sort();
    assert_eq!(taken_ids, expected);
    assert!(store.claim_due(&b, after, 10).await.unwrap().is_empty());

    // A tenant without a limit of its own has the claim's default.
    let store = h.open().await;
    let plain = new_tenant(&*store, "plain").await;
    let t0 = Timestamp::now();
    due(&*store, &plain, t0, 3).await;
    let now = later(t0, 5);
    let fair = Fairness {
        max_running: Some(1),
    };
    let round = store
        .claim_round(&lease("a", later(now, 30)), now, 10, &fair)
        .await
        .unwrap();
    assert_eq!(round.claimed.len(), 1);
    let round = store
        .claim_round(&lease("a", later(now, 30)), now, 10, &fair)
        .await
        .unwrap();
    assert!(round.claimed.is_empty());
    assert_eq!(store.running_count(&plain).await.unwrap(), 1);
}

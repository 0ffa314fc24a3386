//! The rules of a tenant's life: listing, suspension (nothing of the
//! tenant is claimed, due or renewed until it is unsuspended, and then it
//! all carries on) and deletion (nothing of the tenant remains, and nothing
//! of the others goes with it).

use super::schedules::schedule;
use super::work::{commit, event, lease, node};
use super::{Harness, create, execution, ids, later, new_tenant, token};
use crate::model::{Digest, EventKind, ExecutionId, Quotas, StepName, Timestamp, Usage};
use crate::store::{Error, Next, ScheduleFilter, Sent, StepVersion};

/// Tenants list oldest first in pages; a cursor not from the store is
/// refused.
pub(crate) async fn tenant_listing(h: &dyn Harness) {
    let store = h.open().await;
    let mut made = Vec::new();
    for name in ["a", "b", "c", "d", "e"] {
        made.push(new_tenant(&*store, name).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.tenants(2, cursor.as_deref()).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|t| t.id.clone()));
        pages += 1;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, made, "every tenant once, oldest first");
    assert_eq!(pages, 3);
    assert!(matches!(
        store.tenants(10, Some("garbage")).await,
        Err(Error::InvalidCursor(_))
    ));
}

/// While a tenant is suspended nothing of it is claimed or due: not what
/// was queued, parked or held before, not what is created meanwhile (with
/// or without a lease), not its schedules; its holder's commits and
/// renewals are refused. Other tenants are untouched. Unsuspending puts it
/// all back.
pub(crate) async fn a_suspended_tenant_runs_nothing(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let t0 = Timestamp::now();
    let queued = execution(&acme, "w", t0);
    let others = execution(&other, "w", t0);
    for _ in 0..2 {
        create(&*store, &execution(&acme, "w", t0)).await;
    }
    let a = lease("a", later(t0, 30));
    let claimed = store.claim_due(&a, t0, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    // Claimed in creation order.
    let (mut held, mut parked) = (claimed[0].clone(), claimed[1].clone());
    parked.version = commit(
        &*store,
        &parked,
        "a",
        0,
        Next::Park {
            wake_at: later(t0, 100),
        },
    )
    .await
    .unwrap();
    create(&*store, &queued).await;
    create(&*store, &others).await;
    let sched = schedule(&acme, "nightly", "w", later(t0, 5));
    store
        .create_schedule(&sched, Some(later(t0, 5)))
        .await
        .unwrap();

    let t1 = later(t0, 1);
    let suspended = store
        .suspend_tenant(&acme, Some(t1))
        .await
        .unwrap()
        .expect("the tenant exists");
    assert_eq!(suspended.suspended_at, Some(t1));
    let again = store
        .suspend_tenant(&acme, Some(later(t0, 2)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.suspended_at, Some(t1), "the first suspension stands");
    assert_eq!(
        store.tenant(&acme).await.unwrap().unwrap().suspended_at,
        Some(t1)
    );
    let credential = store
        .authenticate(&token("token of acme"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(credential.suspended_at, Some(t1));

    // The holder is fenced off.
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
    assert!(
        store
            .renew_leases(&a, std::slice::from_ref(&held.execution_id))
            .await
            .unwrap()
            .is_empty()
    );
    // Created meanwhile, with a lease or without: off the claim path too.
    let late = execution(&acme, "w", t1);
    create(&*store, &late).await;
    let leased = execution(&acme, "w", t1);
    store
        .create_execution(&leased, None, Some(&lease("a", later(t0, 60))))
        .await
        .unwrap();
    assert!(matches!(
        commit(
            &*store,
            &leased,
            "a",
            0,
            Next::Hold {
                until: later(t0, 60)
            }
        )
        .await,
        Err(Error::LeaseLost(_))
    ));
    // An event for a parked one is kept, and makes it due only later.
    assert!(matches!(
        store
            .send_event(
                &acme,
                &parked.execution_id,
                &event(EventKind::Signal, t1, None)
            )
            .await
            .unwrap(),
        Sent::Stored(_)
    ));
    let far = later(t0, 1000);
    let b = lease("b", later(far, 30));
    let taken = store.claim_due(&b, far, 100).await.unwrap();
    assert_eq!(
        ids(&taken),
        vec![others.execution_id.clone()],
        "only the other tenant's"
    );
    assert_eq!(
        store.next_wake_at(&node("c")).await.unwrap(),
        Some(later(far, 30))
    );
    assert!(store.due_schedules(far, 10).await.unwrap().is_empty());
    assert_eq!(store.next_schedule_at().await.unwrap(), None);
    assert!(
        store
            .claim_execution(&b, far, &acme, &queued.execution_id)
            .await
            .unwrap()
            .is_none()
    );

    let active = store.suspend_tenant(&acme, None).await.unwrap().unwrap();
    assert_eq!(active.suspended_at, None);
    assert_eq!(
        store
            .authenticate(&token("token of acme"))
            .await
            .unwrap()
            .unwrap()
            .suspended_at,
        None
    );
    // Everything is due where it was: the held one at the suspension, the
    // parked one at its event, the rest at their creation.
    assert_eq!(store.next_wake_at(&node("c")).await.unwrap(), Some(t0));
    let back = store.claim_due(&b, later(t0, 50), 100).await.unwrap();
    let mut back: Vec<ExecutionId> = ids(&back);
    back.sort();
    let mut expected = vec![
        queued.execution_id.clone(),
        held.execution_id.clone(),
        parked.execution_id.clone(),
        late.execution_id.clone(),
        leased.execution_id.clone(),
    ];
    expected.sort();
    assert_eq!(back, expected);
    assert_eq!(store.due_schedules(far, 10).await.unwrap().len(), 1);
    assert_eq!(store.next_schedule_at().await.unwrap(), Some(later(t0, 5)));
    // The old holder stays fenced off: its version is gone.
    held.version += 1;
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
    assert_eq!(
        store
            .suspend_tenant(&crate::model::TenantId::generate(), None)
            .await
            .unwrap(),
        None
    );
}

/// Deleting a tenant removes all it owns, component bytes only it used
/// included, and fences off its executions' holders; other tenants keep
/// everything, shared component bytes included. A write for the deleted
/// tenant is refused.
pub(crate) async fn deleting_a_tenant_removes_everything(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let t0 = Timestamp::now();
    let version = |bytes: &[u8]| StepVersion {
        digest: Digest::of(bytes),
        size_bytes: bytes.len() as u64,
        imports: Vec::new(),
        compile_ms: 1,
        created_at: t0,
    };
    let step: StepName = "echo".parse().unwrap();
    for bytes in [&b"shared"[..], b"only acme's"] {
        store
            .put_component(&Digest::of(bytes), bytes)
            .await
            .unwrap();
        store
            .put_step_version(&acme, &step, &version(bytes))
            .await
            .unwrap();
    }
    store
        .put_step_version(&other, &step, &version(b"shared"))
        .await
        .unwrap();
    let wf: crate::model::WorkflowId = "w".parse().unwrap();
    let def = serde_json::json!({"steps": []});
    store.put_workflow(&acme, &wf, &def).await.unwrap();
    store.put_workflow(&other, &wf, &def).await.unwrap();
    store.put_secret(&acme, "key", b"sealed").await.unwrap();
    store.put_secret(&other, "key", b"sealed").await.unwrap();
    store
        .create_schedule(&schedule(&acme, "s", "w", t0), Some(t0))
        .await
        .unwrap();
    store
        .create_schedule(&schedule(&other, "s", "w", t0), Some(t0))
        .await
        .unwrap();
    let running = execution(&acme, "w", t0);
    store
        .create_execution(&running, None, Some(&lease("a", later(t0, 60))))
        .await
        .unwrap();
    store
        .send_event(
            &acme,
            &running.execution_id,
            &event(EventKind::Signal, t0, Some("k")),
        )
        .await
        .unwrap();
    let kept = execution(&other, "w", t0);
    create(&*store, &kept).await;

    assert!(store.delete_tenant(&acme).await.unwrap());
    assert!(!store.delete_tenant(&acme).await.unwrap(), "once");
    assert_eq!(store.tenant(&acme).await.unwrap(), None);
    assert_eq!(store.tenant_by_name("acme").await.unwrap(), None);
    assert_eq!(
        store.authenticate(&token("token of acme")).await.unwrap(),
        None
    );
    assert!(store.tokens(Some(&acme)).await.unwrap().is_empty());
    assert!(store.steps(&acme).await.unwrap().is_empty());
    assert!(store.workflows(&acme).await.unwrap().is_empty());
    assert!(store.secret_names(&acme).await.unwrap().is_empty());
    assert_eq!(
        store.execution(&acme, &running.execution_id).await.unwrap(),
        None
    );
    assert!(
        store
            .events(&running.execution_id, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let schedules = store
        .schedules(&acme, &ScheduleFilter::default(), 10, None)
        .await
        .unwrap();
    assert!(schedules.items.is_empty());
    assert!(matches!(
        commit(
            &*store,
            &running,
            "a",
            0,
            Next::Hold {
                until: later(t0, 60)
            }
        )
        .await,
        Err(Error::LeaseLost(_))
    ));
    assert_eq!(
        store.component(&Digest::of(b"only acme's")).await.unwrap(),
        None,
        "bytes only the deleted tenant used go"
    );
    assert!(
        store
            .component(&Digest::of(b"shared"))
            .await
            .unwrap()
            .is_some()
    );
    // The other tenant keeps everything.
    assert!(store.tenant(&other).await.unwrap().is_some());
    assert_eq!(store.steps(&other).await.unwrap().len(), 1);
    assert_eq!(store.workflows(&other).await.unwrap().len(), 1);
    assert_eq!(
        store.secret_names(&other).await.unwrap(),
        vec!["key".to_owned()]
    );
    assert!(
        store
            .execution(&other, &kept.execution_id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.due_schedules(later(t0, 1), 10).await.unwrap().len(),
        1
    );
    // Nothing new can be written for the deleted tenant.
    assert!(matches!(
        store
            .create_execution(&execution(&acme, "w", t0), None, None)
            .await,
        Err(Error::NoTenant(_))
    ));
    assert!(matches!(
        store
            .add_token(&super::full_token(Some(&acme)), token("new"))
            .await,
        Err(Error::NoTenant(_))
    ));
}

/// A tenant's quotas round-trip, reach its tokens, and usage counts what it
/// holds: steps by name, component bytes by digest, workflows not deleted,
/// secrets, queued and running executions; another tenant's count nothing.
pub(crate) async fn quotas_and_usage(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    assert_eq!(store.usage(&acme).await.unwrap(), Usage::default());
    let quotas = Quotas {
        submissions_per_second: Some(2.5),
        max_steps: Some(3),
        ..Quotas::default()
    };
    let set = store.set_quotas(&acme, &quotas).await.unwrap().unwrap();
    assert_eq!(set.quotas, quotas);
    assert_eq!(store.tenant(&acme).await.unwrap().unwrap().quotas, quotas);
    let credential = store
        .authenticate(&token("token of acme"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(credential.quotas, quotas);
    assert_eq!(
        store
            .set_quotas(&crate::model::TenantId::generate(), &quotas)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.tenant(&other).await.unwrap().unwrap().quotas,
        Quotas::default()
    );

    let t0 = Timestamp::now();
    let version = |bytes: &[u8]| StepVersion {
        digest: Digest::of(bytes),
        size_bytes: bytes.len() as u64,
        imports: Vec::new(),
        compile_ms: 1,
        created_at: t0,
    };
    let (a, b): (StepName, StepName) = ("a".parse().unwrap(), "b".parse().unwrap());
    store
        .put_step_version(&acme, &a, &version(b"12345"))
        .await
        .unwrap();
    store
        .put_step_version(&acme, &a, &version(b"123"))
        .await
        .unwrap();
    // The same bytes under another name count once.
    store
        .put_step_version(&acme, &b, &version(b"12345"))
        .await
        .unwrap();
    store
        .put_step_version(&other, &a, &version(b"other bytes"))
        .await
        .unwrap();
    let def = serde_json::json!({"steps": []});
    for id in ["w1", "w2"] {
        store
            .put_workflow(&acme, &id.parse().unwrap(), &def)
            .await
            .unwrap();
    }
    store
        .delete_workflow(&acme, &"w2".parse().unwrap(), t0)
        .await
        .unwrap();
    store
        .put_workflow(&other, &"w1".parse().unwrap(), &def)
        .await
        .unwrap();
    store.put_secret(&acme, "k", b"sealed").await.unwrap();
    for _ in 0..2 {
        create(&*store, &execution(&acme, "w1", t0)).await;
    }
    let mut running = execution(&acme, "w1", t0);
    running.status = crate::model::Status::Running;
    store
        .create_execution(&running, None, Some(&lease("a", later(t0, 60))))
        .await
        .unwrap();
    create(&*store, &execution(&other, "w1", t0)).await;
    assert_eq!(
        store.usage(&acme).await.unwrap(),
        Usage {
            steps: 2,
            workflows: 1,
            component_bytes: 8,
            secrets: 1,
            queued_executions: 2,
            running_executions: 1,
        }
    );
}

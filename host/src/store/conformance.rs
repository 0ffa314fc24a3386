//! The conformance suite every [`Store`] backend must pass.
//!
//! Each test is a function over a [`Harness`], which opens stores of one
//! backend. A backend runs the whole suite with one line in its own test
//! module: `conformance_tests!(MyHarness::new());`. The suite states the
//! contract in the trait's terms only: it must not look at tables, files or
//! anything else a particular backend keeps.

pub(crate) mod batches;
pub(crate) mod deliveries;
pub(crate) mod events;
pub(crate) mod executions;
pub(crate) mod fair;
pub(crate) mod schedules;
pub(crate) mod tenants;
pub(crate) mod work;

use std::collections::HashSet;
use std::sync::Arc;

use jiff::SignedDuration;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::{
    Commit, Created, Credential, Error, ExecutionFilter, Idempotency, Lease, Next, OnConflict,
    Scope, StepRecord, StepVersion, Store, Tenant, Token, TokenHash,
};
use crate::model::{
    Digest, Execution, ExecutionId, NodeId, Status, StepName, StepRun, StepStatus, TenantId,
    Timestamp, WorkflowId,
};

/// Opens stores of one backend for the suite.
#[async_trait::async_trait]
pub(crate) trait Harness: Send + Sync {
    /// Opens the backend's store. Opening again after the previous store was
    /// dropped must show the same data.
    async fn open(&self) -> Arc<dyn Store>;
}

/// Declares one `#[tokio::test]` per suite function for a harness
/// expression, evaluated afresh for every test.
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::store::conformance::conformance_tests!(@each $harness;
            tenants, tokens, components, step_versions, workflows, workflow_with_steps, executions::execution_round_trip,
            executions::listing_filters, executions::paging_is_stable, executions::bad_cursor, executions::idempotency,
            executions::concurrent_idempotent_creates, group_commit, failed_writes_spare_their_batch,
            survives_reopen, secrets,
            work::claim_order, work::one_owner_at_a_time, work::a_lapsed_lease_is_taken_over,
            work::a_stale_commit_is_refused, work::parking_releases_until_wake_at,
            work::renewal_keeps_the_lease, work::released_leases_are_due,
            work::finished_executions_leave_the_claim_path, work::a_new_execution_can_be_held,
            work::nodes_and_their_leases, work::a_claim_round_says_what_it_took_and_what_comes_next,
            work::retention_deletes_what_finished_before_the_cutoff,
            events::the_inbox_keeps_events_in_order, events::events_make_a_parked_execution_due,
            events::an_unconsumed_event_defeats_a_park, work::claiming_one_execution,
            events::a_resume_reopens_a_restartable_execution, events::a_postponed_execution_is_due_at_its_time,
            schedules::schedules_round_trip_and_list, schedules::due_schedules_by_wake_at,
            schedules::a_tick_starts_at_most_one_execution,
            schedules::a_finished_execution_makes_its_buffered_schedule_due,
            schedules::deleted_workflows_keep_their_versions,
            tenants::tenant_listing, tenants::a_suspended_tenant_runs_nothing,
            tenants::deleting_a_tenant_removes_everything, tenants::quotas_and_usage,
            fair::claims_are_shared_between_tenants, fair::a_running_limit_holds_on_claims,
            deliveries::deliveries_are_claimed_in_order_per_execution,
            deliveries::attempts_are_recorded_by_the_holder_and_retried,
            deliveries::deliveries_and_secrets_go_with_their_owners,
            batches::a_batch_is_stored_whole_and_in_order, batches::a_batch_that_fails_stores_nothing,
            batches::a_repeated_batch_key_returns_the_first);
    };
    (@each $harness:expr; $($($path:ident)::+),*) => {
        $(
            $crate::store::conformance::conformance_tests!(@one $harness; $($path)::+);
        )*
    };
    (@one $harness:expr; $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let harness = $harness;
            $crate::store::conformance::$name(&harness).await;
        }
    };
    (@one $harness:expr; $module:ident :: $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let harness = $harness;
            $crate::store::conformance::$module::$name(&harness).await;
        }
    };
}
pub(crate) use conformance_tests;

pub(crate) fn token(secret: &str) -> TokenHash {
    TokenHash(Sha256::digest(secret.as_bytes()).into())
}

pub(crate) fn later(at: Timestamp, seconds: i64) -> Timestamp {
    at.checked_add(SignedDuration::from_secs(seconds))
        .expect("a timestamp in range")
}

pub(crate) async fn new_tenant(store: &dyn Store, name: &str) -> TenantId {
    let tenant = Tenant {
        id: TenantId::generate(),
        name: name.to_owned(),
        created_at: Timestamp::now(),
        suspended_at: None,
        quotas: Default::default(),
        egress: Default::default(),
    };
    store
        .create_tenant(
            &tenant,
            &full_token(Some(&tenant.id)),
            token(&format!("token of {name}")),
        )
        .await
        .expect("tenant created");
    tenant.id
}

/// A token record with full scope that never expires.
pub(crate) fn full_token(tenant: Option<&TenantId>) -> Token {
    Token {
        id: Token::generate_id(),
        tenant: tenant.cloned(),
        name: None,
        scopes: vec![Scope::Full],
        created_at: Timestamp::now(),
        expires_at: None,
        revoked_at: None,
    }
}

/// Who a token acts for: `Some(None)` for an admin token.
async fn owner(store: &dyn Store, secret: &str) -> Option<Option<TenantId>> {
    store
        .authenticate(&token(secret))
        .await
        .unwrap()
        .map(|c| c.token.tenant)
}

/// A queued execution with a step, and JSON whose numbers must survive
/// storage exactly as written.
pub(crate) fn execution(tenant: &TenantId, workflow: &str, created_at: Timestamp) -> Execution {
    let input_data =
        serde_json::from_str(r#"{"amount": 12.50, "big": 123456789012345678901234567890}"#)
            .expect("valid JSON");
    let mut execution = Execution {
        execution_id: ExecutionId::generate(),
        tenant_id: tenant.clone(),
        workflow_id: workflow.parse().expect("a valid workflow id"),
        workflow_version: 1,
        status: Status::Queued,
        input_data,
        output: None,
        error: None,
        custom_data: Some(json!({"caller": "conformance"})),
        created_at,
        scheduled_for: None,
        schedule_id: None,
        scheduled_at: None,
        batch_id: None,
        started_at: None,
        finished_at: None,
        deadline_at: None,
        duration_ms: None,
        history: Vec::new(),
        steps: vec![StepRun {
            id: "first".into(),
            step: "double".into(),
            digest: Some(Digest::of(b"double")),
            needs: Vec::new(),
            status: StepStatus::Pending,
            skipped_reason: None,
            next_attempt_at: None,
            error: None,
            output: None,
            attempts: Vec::new(),
            attempts_before_resume: 0,
            waiting: None,
        }],
        pending_signals: Vec::new(),
        callback: None,
        deliveries: Vec::new(),
        blocked: None,
        // A new execution is stored at version 1.
        version: 1,
    };
    execution.enter(Status::Queued, created_at);
    execution
}

pub(crate) async fn create(store: &dyn Store, execution: &Execution) {
    let created = store
        .create_execution(execution, None, None)
        .await
        .expect("created");
    assert_eq!(created, Created::New);
}

/// The owner the suite's helpers commit as.
fn tester() -> NodeId {
    NodeId::new_unchecked("conformance")
}

/// A lease of `owner` that lasts as long as a test.
fn long_lease(owner: &NodeId) -> Lease {
    Lease {
        owner: owner.clone(),
        until: later(Timestamp::now(), 3600),
    }
}

/// Commits `exec` as a driver would: claims it for [`tester`] unless that
/// owner holds it already, then commits it (held, or finished when its
/// status is terminal). `exec.version` follows the store.
async fn save(store: &dyn Store, exec: &mut Execution) {
    let lease = long_lease(&tester());
    let claimed = store
        .claim_execution(
            &lease,
            Timestamp::now(),
            &exec.tenant_id,
            &exec.execution_id,
        )
        .await
        .expect("the claim runs");
    if let Some(claimed) = claimed {
        exec.version = claimed.version;
    }
    let next = if exec.status.is_terminal() {
        Next::Finish
    } else {
        Next::Hold { until: lease.until }
    };
    exec.version = store
        .commit_execution(Commit {
            deliveries: &[],
            execution: exec,
            version: exec.version,
            owner: &lease.owner,
            consumed: 0,
            next,
        })
        .await
        .expect("the commit is taken");
}

pub(crate) fn ids(executions: &[Execution]) -> Vec<ExecutionId> {
    executions.iter().map(|e| e.execution_id.clone()).collect()
}

/// Tenants are found by id and name; names are unique.
pub(crate) async fn tenants(h: &dyn Harness) {
    let store = h.open().await;
    let id = new_tenant(&*store, "acme").await;
    let by_id = store.tenant(&id).await.unwrap().expect("found by id");
    assert_eq!(by_id.name, "acme");
    assert_eq!(store.tenant_by_name("acme").await.unwrap(), Some(by_id));
    assert_eq!(store.tenant(&TenantId::generate()).await.unwrap(), None);
    assert_eq!(store.tenant_by_name("nobody").await.unwrap(), None);

    let twin = Tenant {
        id: TenantId::generate(),
        name: "acme".into(),
        created_at: Timestamp::now(),
        suspended_at: None,
        quotas: Default::default(),
        egress: Default::default(),
    };
    let err = store
        .create_tenant(&twin, &full_token(Some(&twin.id)), token("twin"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::AlreadyExists(what) if what.contains("acme")),
        "{err}"
    );
    assert_eq!(store.tenant(&twin.id).await.unwrap(), None);
    assert_eq!(store.authenticate(&token("twin")).await.unwrap(), None);
}

/// Tokens lead to their tenant (or to nobody for admin tokens) with what
/// was stored; listings are per owner, oldest first, without revoked ones;
/// revoking needs the right owner and happens once.
pub(crate) async fn tokens(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    assert_eq!(
        owner(&*store, "token of acme").await,
        Some(Some(acme.clone()))
    );
    assert_eq!(
        owner(&*store, "token of other").await,
        Some(Some(other.clone()))
    );
    assert_eq!(owner(&*store, "unknown").await, None);

    let t0 = Timestamp::now();
    let second = Token {
        name: Some("ci deploys".into()),
        scopes: vec![Scope::Read, Scope::Run],
        created_at: later(t0, 1),
        expires_at: Some(later(t0, 3600)),
        ..full_token(Some(&acme))
    };
    store.add_token(&second, token("second")).await.unwrap();
    let found = store.authenticate(&token("second")).await.unwrap();
    assert_eq!(
        found,
        Some(Credential {
            token: second.clone(),
            suspended_at: None,
            quotas: Default::default(),
        }),
        "every field round-trips"
    );
    let admin = Token {
        name: Some("ops".into()),
        ..full_token(None)
    };
    store.add_token(&admin, token("admin")).await.unwrap();
    assert_eq!(owner(&*store, "admin").await, Some(None));

    let listed: Vec<String> = store
        .tokens(Some(&acme))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    let first = store
        .authenticate(&token("token of acme"))
        .await
        .unwrap()
        .unwrap()
        .token;
    assert_eq!(listed, vec![first.id.clone(), second.id.clone()]);
    assert_eq!(store.tokens(None).await.unwrap(), vec![admin.clone()]);
    assert_eq!(store.tokens(Some(&other)).await.unwrap().len(), 1);

    // Only the owner's scope finds a token to revoke, and only once.
    let at = later(t0, 10);
    assert!(
        !store
            .revoke_token(Some(&other), &second.id, at)
            .await
            .unwrap()
    );
    assert!(!store.revoke_token(None, &second.id, at).await.unwrap());
    assert!(
        !store
            .revoke_token(Some(&acme), &admin.id, at)
            .await
            .unwrap()
    );
    assert!(
        store
            .revoke_token(Some(&acme), &second.id, at)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_token(Some(&acme), &second.id, at)
            .await
            .unwrap()
    );
    let revoked = store
        .authenticate(&token("second"))
        .await
        .unwrap()
        .unwrap()
        .token;
    assert_eq!(revoked.revoked_at, Some(at));
    assert_eq!(store.tokens(Some(&acme)).await.unwrap(), vec![first]);
    assert!(store.revoke_token(None, &admin.id, at).await.unwrap());
    assert_eq!(store.tokens(None).await.unwrap(), vec![]);

    // A token for a tenant that does not exist is refused.
    let orphan = full_token(Some(&TenantId::generate()));
    assert!(store.add_token(&orphan, token("orphan")).await.is_err());
    assert_eq!(owner(&*store, "orphan").await, None);
}

/// Component bytes are stored once per digest.
pub(crate) async fn components(h: &dyn Harness) {
    let store = h.open().await;
    let bytes = b"\0asm component".to_vec();
    let digest = Digest::of(&bytes);
    store.put_component(&digest, &bytes).await.unwrap();
    store.put_component(&digest, &bytes).await.unwrap();
    assert_eq!(store.component(&digest).await.unwrap(), Some(bytes));
    assert_eq!(store.component(&Digest::of(b"other")).await.unwrap(), None);
}

/// Step versions: one per digest, newest last, per tenant, deletable.
pub(crate) async fn step_versions(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let version = |bytes: &[u8], seconds| StepVersion {
        digest: Digest::of(bytes),
        size_bytes: bytes.len() as u64,
        imports: vec!["stephost:step/log".into()],
        compile_ms: 12,
        created_at: later(Timestamp::now(), seconds),
    };
    let double: StepName = "double".parse().unwrap();
    let (v1, v2) = (version(b"one", 0), version(b"two", 1));
    store.put_step_version(&acme, &double, &v1).await.unwrap();
    store.put_step_version(&acme, &double, &v2).await.unwrap();
    store
        .put_step_version(&acme, &double, &version(b"one", 5))
        .await
        .unwrap();
    let step = store
        .step(&acme, &double)
        .await
        .unwrap()
        .expect("the step exists");
    assert_eq!(step.name, double);
    assert_eq!(step.versions, vec![v1.clone(), v2.clone()]);

    let alpha: StepName = "alpha".parse().unwrap();
    store.put_step_version(&acme, &alpha, &v2).await.unwrap();
    let names: Vec<_> = store
        .steps(&acme)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec![alpha.clone(), double.clone()]);

    // Another tenant sees none of it and cannot delete it.
    assert_eq!(store.step(&other, &double).await.unwrap(), None);
    assert!(store.steps(&other).await.unwrap().is_empty());
    assert!(!store.delete_step(&other, &double).await.unwrap());

    assert!(store.delete_step(&acme, &double).await.unwrap());
    assert!(!store.delete_step(&acme, &double).await.unwrap());
    assert_eq!(store.step(&acme, &double).await.unwrap(), None);
    assert!(store.step(&acme, &alpha).await.unwrap().is_some());
    // Deleting a step keeps component bytes, which live by digest alone.
    store.put_component(&v1.digest, b"one").await.unwrap();
    store.delete_step(&acme, &alpha).await.unwrap();
    assert!(store.component(&v1.digest).await.unwrap().is_some());
}

/// Workflows gain a version only when the definition changes.
pub(crate) async fn workflows(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let orders: WorkflowId = "orders".parse().unwrap();
    let first = json!({"steps": [{"id": "a", "step": "double", "retries": 1.0}]});
    let second = json!({"steps": [{"id": "a", "step": "double", "retries": 2}]});

    let v1 = store.put_workflow(&acme, &orders, &first).await.unwrap();
    assert_eq!((v1.version, &v1.definition), (1, &first));
    let again = store.put_workflow(&acme, &orders, &first).await.unwrap();
    assert_eq!(again, v1);
    let v2 = store.put_workflow(&acme, &orders, &second).await.unwrap();
    assert_eq!(v2.version, 2);
    // Going back to an earlier definition is a change too.
    let v3 = store.put_workflow(&acme, &orders, &first).await.unwrap();
    assert_eq!(v3.version, 3);

    assert_eq!(
        store.workflow(&acme, &orders, Some(1)).await.unwrap(),
        Some(v1)
    );
    assert_eq!(
        store.workflow(&acme, &orders, Some(2)).await.unwrap(),
        Some(v2)
    );
    assert_eq!(
        store.workflow(&acme, &orders, None).await.unwrap(),
        Some(v3.clone())
    );
    assert_eq!(store.workflow(&acme, &orders, Some(4)).await.unwrap(), None);

    let billing: WorkflowId = "billing".parse().unwrap();
    let b1 = store.put_workflow(&acme, &billing, &second).await.unwrap();
    assert_eq!(store.workflows(&acme).await.unwrap(), vec![b1, v3]);

    assert_eq!(store.workflow(&other, &orders, None).await.unwrap(), None);
    assert!(store.workflows(&other).await.unwrap().is_empty());
    let theirs = store.put_workflow(&other, &orders, &second).await.unwrap();
    assert_eq!(theirs.version, 1);
}

/// A submission's read: a workflow version with exactly the registered
/// steps its definition names, of its own tenant only.
pub(crate) async fn workflow_with_steps(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    let version = |bytes: &[u8]| StepVersion {
        digest: Digest::of(bytes),
        size_bytes: bytes.len() as u64,
        imports: vec![],
        compile_ms: 1,
        created_at: Timestamp::now(),
    };
    let (double, alpha, zeta): (StepName, StepName, StepName) = (
        "double".parse().unwrap(),
        "alpha".parse().unwrap(),
        "zeta".parse().unwrap(),
    );
    let (d1, d2, a1, z1) = (
        version(b"d1"),
        version(b"d2"),
        version(b"a1"),
        version(b"z1"),
    );
    for (name, v) in [(&double, &d1), (&double, &d2), (&alpha, &a1), (&zeta, &z1)] {
        store.put_step_version(&acme, name, v).await.unwrap();
    }
    store
        .put_step_version(&other, &double, &version(b"theirs"))
        .await
        .unwrap();
    let orders: WorkflowId = "orders".parse().unwrap();
    let first = json!({"steps": [
        {"id": "a", "step": "double"},
        {"id": "b", "step": format!("alpha@{}", a1.digest), "needs": ["a"]},
        {"id": "c", "step": "double"},
        {"id": "d", "step": "missing"},
        {"id": "e", "wait": {"for": "1s"}}]});
    let v1 = store.put_workflow(&acme, &orders, &first).await.unwrap();
    let second = json!({"steps": [{"id": "a", "step": "zeta"}]});
    let v2 = store.put_workflow(&acme, &orders, &second).await.unwrap();

    let by_name = |steps: Vec<StepRecord>| -> Vec<(StepName, Vec<StepVersion>)> {
        steps.into_iter().map(|s| (s.name, s.versions)).collect()
    };
    let (w, steps) = store
        .workflow_with_steps(&acme, &orders, None)
        .await
        .unwrap()
        .expect("the latest version");
    assert_eq!(w, v2);
    assert_eq!(by_name(steps), vec![(zeta.clone(), vec![z1.clone()])]);
    let (w, steps) = store
        .workflow_with_steps(&acme, &orders, Some(1))
        .await
        .unwrap()
        .expect("version 1");
    assert_eq!(w, v1);
    assert_eq!(
        by_name(steps),
        vec![(alpha, vec![a1]), (double.clone(), vec![d1, d2])]
    );

    let idle: WorkflowId = "idle".parse().unwrap();
    let only_waits =
        json!({"steps": [{"id": "w", "wait": {"for": "1s"}}, {"id": "m", "step": "missing"}]});
    let i1 = store.put_workflow(&acme, &idle, &only_waits).await.unwrap();
    assert_eq!(
        store.workflow_with_steps(&acme, &idle, None).await.unwrap(),
        Some((i1, vec![]))
    );

    assert_eq!(
        store
            .workflow_with_steps(&acme, &orders, Some(3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .workflow_with_steps(&other, &orders, None)
            .await
            .unwrap(),
        None
    );
    // A deleted workflow still reads, with its `deleted_at`.
    let at = Timestamp::now();
    assert!(store.delete_workflow(&acme, &orders, at).await.unwrap());
    let (w, _) = store
        .workflow_with_steps(&acme, &orders, None)
        .await
        .unwrap()
        .expect("a deleted workflow reads");
    assert_eq!((w.version, w.deleted_at.is_some()), (2, true));
}

/// Many concurrent writes all commit and all read back.
pub(crate) async fn group_commit(h: &dyn Harness) {
    const N: usize = 2000;
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let spawn_all = |executions: Vec<Execution>, commit: bool| {
        executions
            .into_iter()
            .map(|exec| {
                let store = Arc::clone(&store);
                let mut exec = exec;
                tokio::spawn(async move {
                    if commit {
                        save(&*store, &mut exec).await;
                    } else {
                        assert_eq!(
                            store.create_execution(&exec, None, None).await.unwrap(),
                            Created::New
                        );
                    }
                    exec
                })
            })
            .collect::<Vec<_>>()
    };
    let mut created = Vec::with_capacity(N);
    let fresh = (0..N)
        .map(|_| execution(&acme, "orders", Timestamp::now()))
        .collect();
    for task in spawn_all(fresh, false) {
        let mut exec = task.await.unwrap();
        exec.enter(Status::Running, Timestamp::now());
        created.push(exec);
    }
    let mut saved = Vec::with_capacity(N);
    for task in spawn_all(created, true) {
        saved.push(task.await.unwrap());
    }
    for exec in &saved {
        let stored = store.execution(&acme, &exec.execution_id).await.unwrap();
        assert_eq!(stored.as_ref(), Some(exec));
    }
    let filter = ExecutionFilter {
        status: Some(Status::Running),
        ..Default::default()
    };
    let page = store
        .executions(&acme, &filter, N as u32, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), N);
}

/// Writes that fail among many concurrent ones change nothing, not even
/// halfway, and do not take the others down with them.
pub(crate) async fn failed_writes_spare_their_batch(h: &dyn Harness) {
    let store = h.open().await;
    let taken = new_tenant(&*store, "taken").await;
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let fresh = Tenant {
                    id: TenantId::generate(),
                    name: format!("tenant-{i}"),
                    created_at: Timestamp::now(),
                    suspended_at: None,
                    quotas: Default::default(),
                    egress: Default::default(),
                };
                // A taken name fails at once; a taken token fails after the
                // tenant row was written, which must then be undone.
                let (tenant, secret) = match i % 3 {
                    0 => (
                        Tenant {
                            name: "taken".into(),
                            ..fresh
                        },
                        format!("secret {i}"),
                    ),
                    1 => (fresh, "token of taken".to_owned()),
                    _ => (fresh, format!("secret {i}")),
                };
                let result = store
                    .create_tenant(&tenant, &full_token(Some(&tenant.id)), token(&secret))
                    .await;
                (i, tenant.id, result)
            })
        })
        .collect();
    for task in tasks {
        let (i, id, result) = task.await.unwrap();
        match i % 3 {
            0 => assert!(matches!(result, Err(Error::AlreadyExists(_))), "{result:?}"),
            1 => assert!(result.is_err()),
            _ => result.unwrap(),
        }
        let stored = store.tenant(&id).await.unwrap();
        assert_eq!(stored.is_some(), i % 3 == 2, "tenant {i}");
    }
    assert_eq!(owner(&*store, "token of taken").await, Some(Some(taken)));
    let first_fresh = store.authenticate(&token("secret 2")).await.unwrap();
    assert!(first_fresh.is_some());
}

/// Everything acknowledged is still there after the store is reopened.
pub(crate) async fn survives_reopen(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let double: StepName = "double".parse().unwrap();
    let version = StepVersion {
        digest: Digest::of(b"double"),
        size_bytes: 6,
        imports: Vec::new(),
        compile_ms: 1,
        created_at: Timestamp::now(),
    };
    store
        .put_component(&version.digest, b"double")
        .await
        .unwrap();
    store
        .put_step_version(&acme, &double, &version)
        .await
        .unwrap();
    let orders: WorkflowId = "orders".parse().unwrap();
    let workflow = store
        .put_workflow(&acme, &orders, &json!({"steps": []}))
        .await
        .unwrap();
    let exec = execution(&acme, "orders", Timestamp::now());
    create(&*store, &exec).await;
    let tenant = store.tenant(&acme).await.unwrap();
    drop(store);

    let store = h.open().await;
    assert_eq!(store.tenant(&acme).await.unwrap(), tenant);
    assert_eq!(
        owner(&*store, "token of acme").await,
        Some(Some(acme.clone()))
    );
    assert_eq!(
        store.component(&version.digest).await.unwrap().as_deref(),
        Some(&b"double"[..])
    );
    let step = store
        .step(&acme, &double)
        .await
        .unwrap()
        .expect("the step survives");
    assert_eq!(step.versions, vec![version]);
    assert_eq!(
        store.workflow(&acme, &orders, None).await.unwrap(),
        Some(workflow)
    );
    assert_eq!(
        store.execution(&acme, &exec.execution_id).await.unwrap(),
        Some(exec.clone())
    );
    // Still due, and claimable.
    let claimed = store
        .claim_due(&long_lease(&tester()), Timestamp::now(), 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec![exec.execution_id.clone()]);
}

/// Sealed secrets are kept per tenant and name, replaced, listed by name
/// and deleted; another tenant sees none of them.
pub(crate) async fn secrets(h: &dyn Harness) {
    let store = h.open().await;
    let acme = new_tenant(&*store, "acme").await;
    let other = new_tenant(&*store, "other").await;
    store.put_secret(&acme, "b_key", b"sealed-1").await.unwrap();
    store.put_secret(&acme, "a_key", b"sealed-2").await.unwrap();
    store.put_secret(&acme, "b_key", b"sealed-3").await.unwrap();
    assert_eq!(store.secret_names(&acme).await.unwrap(), ["a_key", "b_key"]);
    assert!(store.secret_names(&other).await.unwrap().is_empty());
    let got = store
        .secrets(&acme, &["b_key".into(), "missing".into()])
        .await
        .unwrap();
    assert_eq!(got, [("b_key".to_owned(), b"sealed-3".to_vec())]);
    assert!(
        store
            .secrets(&other, &["b_key".into()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.delete_secret(&acme, "b_key").await.unwrap());
    assert!(!store.delete_secret(&acme, "b_key").await.unwrap());
    assert!(!store.delete_secret(&other, "a_key").await.unwrap());
    assert_eq!(store.secret_names(&acme).await.unwrap(), ["a_key"]);
}

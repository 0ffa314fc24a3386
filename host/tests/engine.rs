//! The engine over a store that fails: commits that the store refuses are
//! retried until it takes them, and a state is published only once it is
//! committed. The engine runs with a fake step runner (it echoes its input)
//! on the real SQLite store behind a wrapper that injects failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;
use stephost::engine::{
    AttemptSpec, Engine, NoSecrets, RunnerError, Services, Settings, StepRunner, Submission,
    SystemClock, Until, VersionSel,
};
use stephost::model::{
    AttemptReport, Digest, Event, Execution, ExecutionId, Metering, NewEvent, NodeId, Outcome,
    Schedule, ScheduleId, Status, StepName, TenantId, Timestamp, WorkflowId,
};
use stephost::store::sqlite::{Durability, SqliteStore};
use stephost::store::{
    self, Commit, Created, Credential, ExecutionFilter, Held, Idempotency, Lease, Page, Result,
    ScheduleFilter, SchedulePage, ScheduleWrite, Sent, StepRecord, StepVersion, Store, Tenant,
    TenantPage, Token, TokenHash, WorkflowRecord,
};
use tokio_util::sync::CancellationToken;

/// A step runner that returns its input.
struct Echo;

#[async_trait::async_trait]
impl StepRunner for Echo {
    async fn run(
        &self,
        _tenant: &TenantId,
        _digest: &Digest,
        spec: &AttemptSpec,
        _cancel: &CancellationToken,
    ) -> std::result::Result<AttemptReport, RunnerError> {
        Ok(AttemptReport {
            outcome: Outcome::Succeeded {
                output: spec.input.clone(),
            },
            metering: Metering::default(),
            logs: Vec::new(),
            http: Vec::new(),
        })
    }
}

/// The real store, except that the first `failures_left` commits of an
/// execution fail as a full disk would.
struct Flaky {
    inner: Arc<dyn Store>,
    failures_left: AtomicU32,
    failed: AtomicU32,
    /// When set, holds the claim loop between a claim and its driver.
    gate: Option<Gate>,
}

/// Holds a claim round that took something until `release`, and reports
/// when an event's sender, having found the execution held, reads it back.
#[derive(Default)]
struct Gate {
    claimed: tokio::sync::Notify,
    release: tokio::sync::Notify,
    refused: std::sync::atomic::AtomicBool,
    read_after_refusal: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Store for Flaky {
    async fn create_tenant(&self, tenant: &Tenant, token: &Token, hash: TokenHash) -> Result<()> {
        self.inner.create_tenant(tenant, token, hash).await
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        self.inner.tenant(id).await
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        self.inner.tenant_by_name(name).await
    }

    async fn add_token(&self, token: &Token, hash: TokenHash) -> Result<()> {
        self.inner.add_token(token, hash).await
    }

    async fn authenticate(&self, hash: &TokenHash) -> Result<Option<Credential>> {
        self.inner.authenticate(hash).await
    }

    async fn tenants(&self, limit: u32, cursor: Option<&str>) -> Result<TenantPage> {
        self.inner.tenants(limit, cursor).await
    }

    async fn suspend_tenant(&self, id: &TenantId, at: Option<Timestamp>) -> Result<Option<Tenant>> {
        self.inner.suspend_tenant(id, at).await
    }

    async fn set_quotas(
        &self,
        id: &TenantId,
        quotas: &stephost::model::Quotas,
    ) -> Result<Option<Tenant>> {
        self.inner.set_quotas(id, quotas).await
    }

    async fn set_egress(
        &self,
        id: &TenantId,
        egress: &[stephost::model::HostPattern],
    ) -> Result<Option<Tenant>> {
        self.inner.set_egress(id, egress).await
    }

    async fn usage(&self, id: &TenantId) -> Result<stephost::model::Usage> {
        self.inner.usage(id).await
    }

    async fn add_audit(&self, entry: &stephost::store::audit::NewAudit) -> Result<()> {
        self.inner.add_audit(entry).await
    }

    async fn audit(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<stephost::store::audit::AuditPage> {
        self.inner.audit(tenant, limit, cursor).await
    }

    async fn running_count(&self, tenant: &TenantId) -> Result<u64> {
        self.inner.running_count(tenant).await
    }

    async fn queued_count(&self, tenant: &TenantId) -> Result<u64> {
        self.inner.queued_count(tenant).await
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<bool> {
        self.inner.delete_tenant(id).await
    }

    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<Token>> {
        self.inner.tokens(tenant).await
    }

    async fn revoke_token(
        &self,
        tenant: Option<&TenantId>,
        id: &str,
        at: Timestamp,
    ) -> Result<bool> {
        self.inner.revoke_token(tenant, id, at).await
    }

    async fn put_component(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        self.inner.put_component(digest, bytes).await
    }

    async fn component(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        self.inner.component(digest).await
    }

    async fn put_step_version(
        &self,
        tenant: &TenantId,
        name: &StepName,
        version: &StepVersion,
    ) -> Result<()> {
        self.inner.put_step_version(tenant, name, version).await
    }

    async fn step(&self, tenant: &TenantId, name: &StepName) -> Result<Option<StepRecord>> {
        self.inner.step(tenant, name).await
    }

    async fn steps(&self, tenant: &TenantId) -> Result<Vec<StepRecord>> {
        self.inner.steps(tenant).await
    }

    async fn delete_step(&self, tenant: &TenantId, name: &StepName) -> Result<bool> {
        self.inner.delete_step(tenant, name).await
    }

    async fn put_workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        definition: &serde_json::Value,
    ) -> Result<WorkflowRecord> {
        self.inner.put_workflow(tenant, id, definition).await
    }

    async fn workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        version: Option<u32>,
    ) -> Result<Option<WorkflowRecord>> {
        self.inner.workflow(tenant, id, version).await
    }

    async fn workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowRecord>> {
        self.inner.workflows(tenant).await
    }

    async fn delete_workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        at: Timestamp,
    ) -> Result<bool> {
        self.inner.delete_workflow(tenant, id, at).await
    }

    async fn create_execution(
        &self,
        execution: &Execution,
        idempotency: Option<&Idempotency>,
        lease: Option<&Lease>,
    ) -> Result<Created> {
        self.inner
            .create_execution(execution, idempotency, lease)
            .await
    }

    async fn create_batch(
        &self,
        executions: &[Execution],
        idempotency: Option<&Idempotency>,
    ) -> Result<Created> {
        self.inner.create_batch(executions, idempotency).await
    }

    async fn batch(
        &self,
        tenant: &TenantId,
        batch: &stephost::model::BatchId,
    ) -> Result<Vec<stephost::model::BatchMember>> {
        self.inner.batch(tenant, batch).await
    }

    async fn claim_due(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Execution>> {
        self.inner.claim_due(lease, now, limit).await
    }

    async fn claim_round(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
        fair: &stephost::store::Fairness,
    ) -> Result<stephost::store::ClaimRound> {
        let round = self.inner.claim_round(lease, now, limit, fair).await?;
        if let Some(gate) = &self.gate
            && !round.claimed.is_empty()
        {
            gate.claimed.notify_one();
            gate.release.notified().await;
        }
        Ok(round)
    }

    async fn claim_execution(
        &self,
        lease: &Lease,
        now: Timestamp,
        tenant: &TenantId,
        id: &ExecutionId,
    ) -> Result<Option<Execution>> {
        let claimed = self.inner.claim_execution(lease, now, tenant, id).await?;
        if let (Some(gate), None) = (&self.gate, &claimed) {
            gate.refused.store(true, Ordering::SeqCst);
        }
        Ok(claimed)
    }

    async fn commit_execution(&self, commit: Commit<'_>) -> Result<u64> {
        if self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(store::Error::Backend("injected: the disk is full".into()));
        }
        self.inner.commit_execution(commit).await
    }

    async fn renew_leases(&self, lease: &Lease, ids: &[ExecutionId]) -> Result<Vec<Held>> {
        self.inner.renew_leases(lease, ids).await
    }

    async fn release_leases(&self, owner: &NodeId, now: Timestamp) -> Result<u64> {
        self.inner.release_leases(owner, now).await
    }

    async fn next_wake_at(&self, owner: &NodeId) -> Result<Option<Timestamp>> {
        self.inner.next_wake_at(owner).await
    }

    async fn send_event(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        event: &NewEvent,
    ) -> Result<Sent> {
        self.inner.send_event(tenant, id, event).await
    }

    async fn events(&self, id: &ExecutionId, after: u64) -> Result<Vec<Event>> {
        self.inner.events(id, after).await
    }

    async fn execution(&self, tenant: &TenantId, id: &ExecutionId) -> Result<Option<Execution>> {
        if let Some(gate) = &self.gate
            && gate.refused.load(Ordering::SeqCst)
        {
            gate.read_after_refusal.notify_one();
        }
        self.inner.execution(tenant, id).await
    }

    async fn executions(
        &self,
        tenant: &TenantId,
        filter: &ExecutionFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page> {
        self.inner.executions(tenant, filter, limit, cursor).await
    }

    async fn create_schedule(&self, schedule: &Schedule, wake_at: Option<Timestamp>) -> Result<()> {
        self.inner.create_schedule(schedule, wake_at).await
    }

    async fn schedule(&self, tenant: &TenantId, id: &ScheduleId) -> Result<Option<Schedule>> {
        self.inner.schedule(tenant, id).await
    }

    async fn schedules(
        &self,
        tenant: &TenantId,
        filter: &ScheduleFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<SchedulePage> {
        self.inner.schedules(tenant, filter, limit, cursor).await
    }

    async fn write_schedule(&self, write: ScheduleWrite<'_>) -> Result<Option<u64>> {
        self.inner.write_schedule(write).await
    }

    async fn delete_schedule(&self, tenant: &TenantId, id: &ScheduleId) -> Result<bool> {
        self.inner.delete_schedule(tenant, id).await
    }

    async fn due_schedules(&self, now: Timestamp, limit: usize) -> Result<Vec<Schedule>> {
        self.inner.due_schedules(now, limit).await
    }

    async fn next_schedule_at(&self) -> Result<Option<Timestamp>> {
        self.inner.next_schedule_at().await
    }

    async fn put_secret(&self, tenant: &TenantId, name: &str, sealed: &[u8]) -> Result<()> {
        self.inner.put_secret(tenant, name, sealed).await
    }

    async fn secret_names(&self, tenant: &TenantId) -> Result<Vec<String>> {
        self.inner.secret_names(tenant).await
    }

    async fn delete_secret(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        self.inner.delete_secret(tenant, name).await
    }

    async fn secrets(&self, tenant: &TenantId, names: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner.secrets(tenant, names).await
    }

    async fn heartbeat(&self, beat: &stephost::store::Heartbeat<'_>) -> Result<()> {
        self.inner.heartbeat(beat).await
    }

    async fn nodes(&self, now: Timestamp) -> Result<Vec<stephost::store::NodeRecord>> {
        self.inner.nodes(now).await
    }

    async fn forget_nodes(&self, before: Timestamp) -> Result<u64> {
        self.inner.forget_nodes(before).await
    }

    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<u64> {
        self.inner.purge_finished(before, limit).await
    }
    async fn claim_deliveries(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<stephost::model::DueDelivery>> {
        self.inner.claim_deliveries(lease, now, limit).await
    }
    async fn record_delivery(
        &self,
        owner: &NodeId,
        delivery_id: &str,
        attempt: &stephost::model::DeliveryAttempt,
        next: stephost::store::DeliveryNext,
    ) -> Result<bool> {
        self.inner
            .record_delivery(owner, delivery_id, attempt, next)
            .await
    }
    async fn deliveries(&self, id: &ExecutionId) -> Result<Vec<stephost::model::Delivery>> {
        self.inner.deliveries(id).await
    }
    async fn retry_delivery(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        delivery_id: &str,
        now: Timestamp,
    ) -> Result<Option<stephost::model::Delivery>> {
        self.inner
            .retry_delivery(tenant, id, delivery_id, now)
            .await
    }
    async fn next_delivery_at(&self) -> Result<Option<Timestamp>> {
        self.inner.next_delivery_at().await
    }
    async fn webhook_secret(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<stephost::model::WebhookSecret>> {
        self.inner.webhook_secret(tenant).await
    }
    async fn put_webhook_secret(
        &self,
        tenant: &TenantId,
        secret: &stephost::model::WebhookSecret,
        expected: Option<Timestamp>,
    ) -> Result<stephost::model::WebhookSecret> {
        self.inner
            .put_webhook_secret(tenant, secret, expected)
            .await
    }
}

impl Flaky {
    /// `inner`, failing its next `failures` commits, gated or not.
    fn over(inner: Arc<dyn Store>, failures: u32, gate: Option<Gate>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            failures_left: AtomicU32::new(failures),
            failed: AtomicU32::new(0),
            gate,
        })
    }
}

/// The engine over `store` with the echo runner, one worker, four driver
/// slots and a 50 ms poll.
async fn start(store: Arc<Flaky>, lease_ttl: Duration) -> Engine {
    start_with(store, lease_ttl, 4, Duration::from_millis(50)).await
}

async fn start_with(
    store: Arc<Flaky>,
    lease_ttl: Duration,
    max_in_flight: usize,
    poll_interval: Duration,
) -> Engine {
    Engine::start(
        store,
        Services {
            runner: Arc::new(Echo),
            secrets: Arc::new(NoSecrets),
            clock: Arc::new(SystemClock),
            outbound: stephost::outbound::Outbound::new(&Default::default()).unwrap(),
        },
        Settings {
            workers: 1,
            max_in_flight,
            runtime: None,
            node: NodeId::generate(),
            lease_ttl,
            poll_interval,
            claim_work: true,
            quotas: Default::default(),
            retention: None,
            callbacks: Default::default(),
            step_http: Default::default(),
        },
    )
    .await
    .unwrap()
}

/// A SQLite store with a tenant, the step `echo` and the workflow `two`.
async fn setup() -> (tempfile::TempDir, Arc<dyn Store>, Tenant, WorkflowId) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("store.db"), Durability::Off).unwrap());
    let tenant = Tenant {
        id: TenantId::generate(),
        name: "acme".into(),
        created_at: Timestamp::now(),
        suspended_at: None,
        quotas: Default::default(),
        egress: Default::default(),
    };
    let token = Token {
        id: Token::generate_id(),
        tenant: Some(tenant.id.clone()),
        name: None,
        scopes: vec![stephost::store::Scope::Full],
        created_at: Timestamp::now(),
        expires_at: None,
        revoked_at: None,
    };
    sqlite
        .create_tenant(&tenant, &token, TokenHash([7; 32]))
        .await
        .unwrap();
    let step: StepName = "echo".parse().unwrap();
    let version = StepVersion {
        digest: Digest::of(b"echo"),
        size_bytes: 4,
        imports: Vec::new(),
        compile_ms: 0,
        created_at: Timestamp::now(),
    };
    sqlite
        .put_step_version(&tenant.id, &step, &version)
        .await
        .unwrap();
    let workflow: WorkflowId = "two".parse().unwrap();
    sqlite
        .put_workflow(
            &tenant.id,
            &workflow,
            &json!({"steps": [{"id": "a", "step": "echo"}, {"id": "b", "step": "echo"}]}),
        )
        .await
        .unwrap();
    (dir, sqlite, tenant, workflow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_the_store_refuses_are_retried_until_it_takes_them() {
    let (_dir, sqlite, tenant, workflow) = setup().await;
    let flaky = Flaky::over(sqlite.clone(), 3, None);
    let engine = start(flaky.clone(), Settings::LEASE_TTL).await;
    let submitted = engine
        .submit(
            &tenant.id,
            Submission {
                callback: None,
                workflow_id: workflow,
                version: VersionSel::Latest,
                input_data: json!({"n": 12}),
                custom_data: None,
                start: None,
            },
            None,
        )
        .await
        .unwrap();
    let id = submitted.execution().execution_id.clone();
    let done = engine
        .wait(&tenant.id, &id, &Until::Terminal, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    assert_eq!(done.output, Some(json!({"n": 12})));
    assert_eq!(
        flaky.failed.load(Ordering::SeqCst),
        3,
        "the injected failures happened"
    );
    // What the waiter saw is what the store holds.
    let stored = sqlite.execution(&tenant.id, &id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Succeeded);
    assert_eq!(stored.output, done.output);
    assert_eq!(stored.history, done.history);
}

/// A driver whose claim saw an empty inbox skips reading it, unless an
/// event arrived meanwhile that found no driver to tell: a cancel sent
/// after the claim committed but before its driver was registered (the
/// sender finds the execution held, and nobody here driving it) still
/// stops the execution. The gate holds the claim loop in exactly that
/// window; the echo steps would otherwise succeed at once, and the lease
/// renewal that would also find the event comes only after 12 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_slips_between_a_claim_and_its_driver_is_read() {
    let (_dir, sqlite, tenant, workflow) = setup().await;
    let gated = Flaky::over(sqlite.clone(), 0, Some(Gate::default()));
    let engine = start(gated.clone(), Duration::from_secs(60)).await;
    let gate = gated.gate.as_ref().unwrap();
    // A postponed run is left to the claim loop (no fast path).
    let submitted = engine
        .submit(
            &tenant.id,
            Submission {
                callback: None,
                workflow_id: workflow,
                version: VersionSel::Latest,
                input_data: json!({"n": 1}),
                custom_data: None,
                start: Some(stephost::engine::StartAt::Delay(Duration::from_millis(100))),
            },
            None,
        )
        .await
        .unwrap();
    let id = submitted.execution().execution_id.clone();
    tokio::time::timeout(Duration::from_secs(10), gate.claimed.notified())
        .await
        .expect("the claim within 10 s");
    let cancel = {
        let engine = engine.clone();
        let tenant = tenant.id.clone();
        let id = id.clone();
        tokio::spawn(async move { engine.cancel(&tenant, &id).await })
    };
    // The cancel is stored, found no driver and could not claim the
    // execution; it now waits for the outcome.
    tokio::time::timeout(Duration::from_secs(10), gate.read_after_refusal.notified())
        .await
        .expect("the refused claim within 10 s");
    gate.release.notify_one();
    let cancelled = tokio::time::timeout(Duration::from_secs(10), cancel)
        .await
        .expect("the cancel answers well before the renewal")
        .unwrap()
        .expect("cancelled");
    assert_eq!(cancelled.status, Status::Cancelled, "{cancelled:?}");
    let stored = sqlite.execution(&tenant.id, &id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Cancelled);
    assert!(
        stored.steps.iter().all(|s| s.attempts.is_empty()),
        "no step ran: {:?}",
        stored.steps
    );
}

/// A driver slot that a finished execution frees goes to the next due one
/// at once, not at the next poll: with one slot and a one-minute poll,
/// twenty executions submitted together all finish within seconds. (A
/// finished execution wakes the claim loop only when the loop found every
/// slot taken; one that parks always does.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_freed_by_a_finished_execution_is_claimed_at_once() {
    let (_dir, sqlite, tenant, workflow) = setup().await;
    let store = Flaky::over(sqlite, 0, None);
    let engine = start_with(store, Settings::LEASE_TTL, 1, Duration::from_secs(60)).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        let submitted = engine
            .submit(
                &tenant.id,
                Submission {
                    callback: None,
                    workflow_id: workflow.clone(),
                    version: VersionSel::Latest,
                    input_data: json!({"n": n}),
                    custom_data: None,
                    start: None,
                },
                None,
            )
            .await
            .unwrap();
        ids.push(submitted.execution().execution_id.clone());
    }
    for id in ids {
        let done = engine
            .wait(&tenant.id, &id, &Until::Terminal, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(done.status, Status::Succeeded, "{done:?}");
    }
}

/// The engine's maps that follow work in flight (drivers, sync calls,
/// watched executions, tenants waiting for a worker) hold nothing once
/// the work is done, whatever way it ended: async runs, sync calls, waits
/// that timed out, postponed runs cancelled before they started; with two
/// driver slots, so that most runs queue first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maps_that_follow_work_in_flight_are_empty_once_it_is_done() {
    let (_dir, sqlite, tenant, workflow) = setup().await;
    let store = Flaky::over(sqlite, 0, None);
    let engine = start_with(store, Settings::LEASE_TTL, 2, Duration::from_millis(50)).await;
    let submission = |n: u32, start: Option<stephost::engine::StartAt>| Submission {
        callback: None,
        workflow_id: workflow.clone(),
        version: VersionSel::Latest,
        input_data: json!({"n": n}),
        custom_data: None,
        start,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..40 {
        let (engine, tenant, sub) = (engine.clone(), tenant.id.clone(), submission(n, None));
        tasks.spawn(async move {
            if n % 2 == 0 {
                let (_, done) = engine
                    .submit_and_wait(
                        &tenant,
                        sub,
                        None,
                        &Until::Terminal,
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap();
                done
            } else {
                let id = engine.submit(&tenant, sub, None).await.unwrap();
                let id = id.execution().execution_id.clone();
                engine
                    .wait(&tenant, &id, &Until::Terminal, Duration::from_secs(30))
                    .await
                    .unwrap()
            }
        });
    }
    let mut postponed = Vec::new();
    for n in 0..10 {
        let sub = submission(
            n,
            Some(stephost::engine::StartAt::Delay(Duration::from_secs(3600))),
        );
        let id = engine.submit(&tenant.id, sub, None).await.unwrap();
        let id = id.execution().execution_id.clone();
        // A wait that times out leaves no watcher behind.
        let seen = engine
            .wait(&tenant.id, &id, &Until::Terminal, Duration::from_millis(5))
            .await
            .unwrap();
        assert_eq!(seen.status, Status::Scheduled);
        postponed.push(id);
    }
    for id in &postponed {
        let cancelled = engine.cancel(&tenant.id, id).await.unwrap();
        assert_eq!(cancelled.status, Status::Cancelled, "{cancelled:?}");
    }
    while let Some(done) = tasks.join_next().await {
        let done = done.unwrap();
        assert_eq!(done.status, Status::Succeeded, "{done:?}");
    }
    // The last drivers end just after their final commit is published:
    // wait for that, then nothing may be left.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut resident = engine.resident();
    while resident.drivers > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        resident = engine.resident();
    }
    assert_eq!(
        resident,
        stephost::engine::Resident {
            drivers: 0,
            sync_calls: 0,
            watched: 0,
            tenants_waiting: 0,
            definitions: 1,
        },
        "what the engine holds after 50 executions ended"
    );
}

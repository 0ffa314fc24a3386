//! The per-execution driver: the I/O shell around the DAG's pure core
//! (`dag`).
//!
//! The core decides; the driver carries out its decisions. It spawns the
//! attempts the core asks for on the bounded attempt pool, feeds back their
//! results, the inbox's events and the passing of time, interrupts running
//! attempts once the core stops, and ends when the core parks or finishes
//! the execution. It runs only while it has something to run: a parked
//! execution is committed with its next `wake_at` and the driver ends,
//! giving back its slot and its memory.
//!
//! Persistence runs beside the driver: each state change replaces the
//! execution's pending snapshot, and a persister task commits the newest
//! snapshot under the lease (version and owner checked) and only then
//! publishes it to waiters. Commits thus overlap with running steps, and
//! changes that arrive during one commit share the next. A snapshot that
//! keeps the lease waits until the state has been quiet for a moment
//! ([`SETTLE`]), so a run of fast steps shares one commit and an execution
//! that finishes at once commits only its end; parking and finishing commit
//! without waiting. Nothing is
//! published before it is durable, so a step that anyone saw complete never
//! runs again after a crash; a completion not yet committed at a crash is
//! redone, like an attempt in flight (at-least-once). A refused commit means
//! another process took the execution over: the driver stops at once and
//! commits nothing more.
//!
//! Events (cancel, signal, pause, resume) are read from the execution's
//! inbox when the driver starts and whenever it is told more arrived; each
//! event's effect is applied to the execution's record at once, and the
//! commit that carries the record consumes them, so an event is never
//! consumed without its effect being stored.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::dag::{Action, Done, Start, State, Stop};
use super::definition::Definition;
use super::watch::Published;
use super::{AttemptSpec, Driven, Inner};
use crate::model::{Capabilities, Execution, Overrides, Status, Timestamp};
use crate::store::{self, Commit, Next};

/// What the driver hands the persister: the newest state, the inbox events
/// it consumed, and what happens to the lease.
#[derive(Clone)]
struct Snapshot {
    execution: Arc<Execution>,
    consumed: u64,
    after: After,
}

/// The lease after a snapshot's commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Hold,
    Park(Timestamp),
    Finish,
}

/// Commits `snapshot` at `version`, retrying store failures until the store
/// takes it or refuses it: a state the store has not committed is never
/// published. Returns the new version, or `None` when the lease is lost.
async fn commit(
    inner: &Inner,
    snapshot: &Snapshot,
    version: u64,
    deliveries: &[crate::model::NewDelivery],
) -> Option<u64> {
    let mut delay = Duration::from_millis(50);
    loop {
        let next = match snapshot.after {
            After::Hold => Next::Hold {
                until: super::dag::add(inner.clock.now(), inner.lease_ttl),
            },
            After::Park(wake_at) => Next::Park { wake_at },
            After::Finish => Next::Finish,
        };
        let commit = Commit {
            execution: &snapshot.execution,
            version,
            owner: &inner.node,
            consumed: snapshot.consumed,
            next,
            deliveries,
        };
        match inner.store.commit_execution(commit).await {
            Ok(version) => {
                if !deliveries.is_empty() {
                    inner.deliveries_due.notify_one();
                }
                if snapshot.after == After::Finish && snapshot.execution.schedule_id.is_some() {
                    // Its schedule may have a tick buffered behind it.
                    inner.schedule_wake.notify_one();
                }
                return Some(version);
            }
            Err(store::Error::LeaseLost(id)) => {
                tracing::warn!(execution = %id, "the lease was lost; another process drives this execution now");
                return None;
            }
            Err(e) => {
                tracing::error!(execution = %snapshot.execution.execution_id, error = %e, "committing an execution failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Drives a claimed execution until it parks, finishes or loses its lease.
/// `slot` is false for a driver started only to act on a cancel or a pause:
/// it starts no step, and otherwise parks again at once (due now, so that a
/// driver with a slot takes over). `read_inbox` is false when the inbox is
/// known to be empty (see `work::spawn_driver`).
pub(super) async fn drive(
    inner: &Arc<Inner>,
    exec: Execution,
    driven: &Arc<Driven>,
    slot: bool,
    read_inbox: bool,
) {
    let def = inner.definition(&exec).await;
    let claimed = Arc::new(exec.clone());
    let (snapshots, pending) = watch::channel(Snapshot {
        execution: claimed.clone(),
        consumed: 0,
        after: After::Hold,
    });
    let persister = tokio::spawn(persister(
        inner.clone(),
        driven.clone(),
        (claimed, exec.version),
        pending,
    ));
    let mut run = Run {
        snapshots: Some(snapshots),
        persister: Some(persister),
        inner: inner.clone(),
        driven: driven.clone(),
        attempts_cancel: CancellationToken::new(),
        tasks: JoinSet::new(),
        consumed: 0,
        state: State::new(exec),
    };
    let first_read = if read_inbox {
        run.read_events().await
    } else {
        Ok(false)
    };
    if let Err(e) = first_read {
        tracing::error!(execution = %run.state.exec.execution_id, error = %e, "reading the inbox failed; the execution is retried");
        run.park(run.now()).await;
        return;
    }
    if run.state.exec.status.is_terminal() {
        // Claimed with nothing that reopens it (a resume does): put it back
        // off the claim path unchanged.
        run.send(After::Finish);
        run.flush().await;
        return;
    }
    let now = run.now();
    if run.state.exec.status == Status::Scheduled
        && run.state.stop.is_none()
        && let Some(at) = run.state.exec.scheduled_for.filter(|&at| at > now)
    {
        // Claimed before its time with nothing that starts it: not yet.
        run.park(at).await;
        return;
    }
    if !slot && run.state.stop != Some(Stop::Cancelled) {
        let at = match run.state.exec.status {
            Status::Paused => run.state.exec.deadline_at.unwrap_or(now),
            _ => now,
        };
        run.park(at).await;
        return;
    }
    match def {
        Ok(def) => run.go(&def).await,
        Err(message) => {
            run.state.fail_to_start("definition_unavailable", message);
            run.finish(Status::Failed, None).await;
        }
    }
}

/// How long a held snapshot waits for a newer one before it is committed.
/// A run of fast steps changes the state every few hundred microseconds;
/// committing each change would put a commit between every step and the
/// next, and the final commit behind them. Waiting until the state has been
/// quiet this long lets one commit cover them, and an execution that
/// finishes within it commits only when it finishes.
const SETTLE: Duration = Duration::from_millis(2);

/// The longest a held snapshot waits, however often the state changes, so
/// that completed steps of a busy execution are never long uncommitted.
const SETTLE_MAX: Duration = Duration::from_millis(20);

/// Waits until the held snapshot in `pending` can be committed: the state
/// has been quiet for [`SETTLE`], [`SETTLE_MAX`] has passed, or a snapshot
/// that parks or finishes arrived (those commit at once, as does the last
/// snapshot once the driver has gone). Nothing waits for this: the driver
/// goes on running steps, and only publication to waiters follows it.
async fn settle(pending: &mut watch::Receiver<Snapshot>) {
    let cap = tokio::time::sleep(SETTLE_MAX);
    tokio::pin!(cap);
    loop {
        tokio::select! {
            biased;
            changed = pending.changed() => {
                if changed.is_err() || pending.borrow().after != After::Hold {
                    return;
                }
            }
            () = &mut cap => return,
            () = tokio::time::sleep(SETTLE) => return,
        }
    }
}

/// Commits the newest snapshot (with the callbacks that report what changed
/// since the state the store holds: the outbox), then publishes it; ends once the driver
/// dropped its sender and the last snapshot is committed, or at once when
/// the lease is lost (after telling the driver).
async fn persister(
    inner: Arc<Inner>,
    driven: Arc<Driven>,
    (claimed, mut version): (Arc<Execution>, u64),
    mut pending: watch::Receiver<Snapshot>,
) {
    // What the store holds: the callbacks a commit stores report what
    // changed since. (Not the channel's value, which the driver may have
    // replaced before this task first runs.)
    let mut committed_state = claimed;
    while pending.changed().await.is_ok() {
        if pending.borrow().after == After::Hold {
            settle(&mut pending).await;
        }
        let snapshot = pending.borrow_and_update().clone();
        let deliveries = super::callbacks::deliveries(
            &committed_state,
            &snapshot.execution,
            inner.clock.now(),
            inner
                .callbacks
                .retry_delays
                .first()
                .copied()
                .unwrap_or_default(),
            inner.callbacks.max_output_bytes,
        );
        let Some(committed) = commit(&inner, &snapshot, version, &deliveries).await else {
            driven.lost.cancel();
            return;
        };
        version = committed;
        committed_state = snapshot.execution.clone();
        let id = snapshot.execution.execution_id.clone();
        inner.watchers.publish(
            &id,
            Published {
                version,
                execution: Some(snapshot.execution),
            },
        );
    }
}

struct Run {
    /// The newest state for the persister.
    snapshots: Option<watch::Sender<Snapshot>>,
    persister: Option<JoinHandle<()>>,
    inner: Arc<Inner>,
    driven: Arc<Driven>,
    /// Cancels running attempts: once the core stops (a cancel, the
    /// deadline, a failure), or when the lease is lost.
    attempts_cancel: CancellationToken,
    /// The attempts; `None` from one that never started because the engine
    /// began shutting down while it waited for a worker.
    tasks: JoinSet<Option<Done>>,
    /// The last inbox event acted on.
    consumed: u64,
    state: State,
}

impl Run {
    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Hands the current state to the persister; the lease stays held.
    fn save(&mut self) {
        let now = self.now();
        self.state.settle_status(now);
        self.send(After::Hold);
    }

    fn send(&self, after: After) {
        if after == After::Finish {
            self.driven.finished.store(true, Ordering::SeqCst);
        }
        if let Some(tx) = &self.snapshots {
            tx.send_replace(Snapshot {
                execution: Arc::new(self.state.exec.clone()),
                consumed: self.consumed,
                after,
            });
        }
    }

    /// Waits until everything handed to the persister is committed and
    /// published.
    async fn flush(&mut self) {
        self.snapshots = None;
        if let Some(p) = self.persister.take()
            && let Err(e) = p.await
        {
            tracing::error!(execution = %self.state.exec.execution_id, error = %e, "the persister failed");
        }
    }

    /// Commits the current state with the lease released, due again at
    /// `wake_at`, and ends the drive.
    async fn park(&mut self, wake_at: Timestamp) {
        let now = self.now();
        self.state.settle_status(now);
        self.send(After::Park(wake_at));
        self.flush().await;
    }

    /// Reads the inbox events not yet acted on and hands them to the core.
    /// Returns whether there were any.
    async fn read_events(&mut self) -> Result<bool, store::Error> {
        let events = self
            .inner
            .store
            .events(&self.state.exec.execution_id, self.consumed)
            .await?;
        let changed = !events.is_empty();
        let now = self.now();
        for event in events {
            self.consumed = self.consumed.max(event.seq);
            self.state.apply(event, now);
        }
        Ok(changed)
    }

    /// Stops at once, without committing: another process holds the lease.
    async fn abandon(&mut self) {
        self.attempts_cancel.cancel();
        self.snapshots = None;
        if let Some(p) = self.persister.take() {
            p.abort();
        }
        self.tasks.shutdown().await;
    }

    async fn go(&mut self, def: &Definition) {
        if self.state.stop.is_none() {
            let names: Vec<String> = def.secret_names().into_iter().collect();
            if !names.is_empty() {
                match self
                    .inner
                    .secrets
                    .open(&self.state.exec.tenant_id, &names)
                    .await
                {
                    Ok(values) => self.state.set_secrets(values),
                    Err(message) => {
                        self.state.fail_to_start("secrets_unavailable", message);
                        self.finish(Status::Failed, None).await;
                        return;
                    }
                }
            }
        }
        let now = self.now();
        if self.state.begin(def, now) {
            self.save();
        }
        let needs = def.needs();
        loop {
            if self.inner.draining.is_cancelled() {
                self.drain(def).await;
                return;
            }
            let now = self.now();
            let action = self.state.advance(def, &needs, now, self.tasks.len());
            if self.state.stop.is_some() {
                self.attempts_cancel.cancel();
            }
            let (start, changed, until) = match action {
                Action::Finish(status) => {
                    self.finish(status, Some(def)).await;
                    return;
                }
                Action::Park { wake_at } => {
                    self.park(wake_at).await;
                    return;
                }
                Action::Run {
                    start,
                    changed,
                    until,
                } => (start, changed, until),
            };
            for s in start {
                self.spawn(s, def);
            }
            if changed {
                self.save();
            }
            let clock = self.inner.clock.clone();
            let timer = async {
                match until {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let driven = self.driven.clone();
            let draining = self.inner.draining.clone();
            let has_tasks = !self.tasks.is_empty();
            tokio::select! {
                done = self.tasks.join_next(), if has_tasks => {
                    if let Some(Ok(Some(done))) = done {
                        let random = random_unit();
                        self.state.record(def, done, self.now(), random);
                        // Collect every other attempt that already finished,
                        // so that one commit covers them all.
                        while let Some(Ok(Some(more))) = self.tasks.try_join_next() {
                            self.state.record(def, more, self.now(), random_unit());
                        }
                        self.save();
                    }
                }
                () = timer => {}
                () = driven.events.notified() => {
                    match self.read_events().await {
                        Ok(true) => self.save(),
                        Ok(false) => {}
                        Err(e) => tracing::error!(execution = %self.state.exec.execution_id, error = %e, "reading the inbox failed; it is read again at the next notice"),
                    }
                }
                () = driven.lost.cancelled() => {
                    self.abandon().await;
                    return;
                }
                () = draining.cancelled() => {}
            }
        }
    }

    /// The engine is shutting down: starts nothing, lets the running
    /// attempts finish and commits their results, then hands the execution
    /// back to the store, due now, for whichever node claims it next (which
    /// decides what comes next, as after any claim). Events stay in the
    /// inbox for that node.
    async fn drain(&mut self, def: &Definition) {
        while !self.tasks.is_empty() {
            let driven = self.driven.clone();
            tokio::select! {
                done = self.tasks.join_next() => {
                    if let Some(Ok(Some(done))) = done {
                        self.state.record(def, done, self.now(), random_unit());
                        self.save();
                    }
                }
                () = driven.lost.cancelled() => {
                    self.abandon().await;
                    return;
                }
            }
        }
        let now = self.now();
        self.park(now).await;
    }

    /// Runs one attempt the core asked for on the bounded attempt pool.
    fn spawn(&mut self, s: Start, def: &Definition) {
        let digest = s.digest;
        let http = def.http(s.index, &self.inner.step_http.caps);
        let mut spec = AttemptSpec {
            input: s.input.to_string(),
            overrides: s.overrides,
            ceiling: Overrides::default(),
            remaining: s.remaining,
            caps: Capabilities {
                config: s.config,
                secrets: self.state.secrets.values().cloned().collect(),
                http: None,
            },
        };
        let inner = self.inner.clone();
        let tenant = self.state.exec.tenant_id.clone();
        let id = self.state.exec.execution_id.clone();
        let cancel = self.attempts_cancel.clone();
        let (index, number, asked_at, input) = (s.index, s.number, s.started_at, s.input);
        self.tasks.spawn(async move {
            let (started_at, result) = {
                // An attempt still waiting for a worker when the engine
                // begins shutting down never starts: the node that claims
                // the execution next runs it.
                let share = super::tenants::share(&inner, &tenant).await;
                spec.ceiling = share.ceiling;
                spec.caps.http =
                    http.map(|(step, caps)| inner.step_http.grant(step, caps, &share.egress));
                let sync = super::tenants::is_sync(&inner, &id);
                let _worker = tokio::select! {
                    biased;
                    () = inner.draining.cancelled() => return None,
                    worker = inner.attempts.acquire(&tenant, share.weight, sync) => worker,
                };
                // The attempt starts now: its record says so, and the time
                // it waited for a worker comes off what is left before the
                // workflow's deadline.
                let started_at = inner.clock.now();
                let waited = started_at
                    .duration_since(asked_at)
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                spec.remaining = spec.remaining.saturating_sub(waited);
                (
                    started_at,
                    inner.runner.run(&tenant, &digest, &spec, &cancel).await,
                )
            };
            Some(Done {
                index,
                number,
                started_at,
                input,
                result,
            })
        });
    }

    /// Lets interrupted attempts report back, concludes the execution with
    /// `status` and commits the terminal state.
    async fn finish(&mut self, status: Status, def: Option<&Definition>) {
        while let Some(done) = self.tasks.join_next().await {
            if let (Ok(Some(done)), Some(def)) = (done, def) {
                let now = self.now();
                self.state.record(def, done, now, random_unit());
            }
        }
        let now = self.now();
        self.state.conclude(def, status, now);
        self.send(After::Finish);
        self.flush().await;
    }
}

/// A random number in [0, 1) for jitter.
fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

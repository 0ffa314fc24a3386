//! The per-execution driver.
//!
//! The driver walks the workflow's DAG: it starts every step whose `needs`
//! have settled (in parallel, through the bounded attempt pool), evaluates
//! conditions and templates, retries failures with backoff, and stops at the
//! workflow deadline, a failure or a cancel. It runs only while it has
//! something to run: when nothing can start before a later time (a retry
//! delay), it parks the execution in the store until then and ends, giving
//! back its slot and its memory.
//!
//! Persistence runs beside the driver: each state change replaces the
//! execution's pending snapshot, and a persister task commits the newest
//! snapshot under the lease (version and owner checked) and only then
//! publishes it to waiters. Commits thus overlap with running steps, and
//! changes that arrive during one commit share the next. Nothing is
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
//!
//! A paused execution starts no new step; attempts already running finish,
//! and then it parks until its deadline (which keeps running) or an event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

mod waits;

use super::definition::Definition;
use super::template::Scope;
use super::watch::Published;
use super::{AttemptSpec, Driven, Inner, RunnerError};
use crate::model::{
    AttemptReport, Capabilities, EventKind, Execution, ExecutionError, Outcome, PendingSignal,
    Redactor, Status, StepStatus, Timestamp, attempt_from,
};
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
async fn commit(inner: &Inner, snapshot: &Snapshot, version: u64) -> Option<u64> {
    let mut delay = Duration::from_millis(50);
    loop {
        let next = match snapshot.after {
            After::Hold => Next::Hold {
                until: add(inner.clock.now(), inner.lease_ttl),
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
        };
        match inner.store.commit_execution(commit).await {
            Ok(version) => return Some(version),
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

/// One finished attempt, as the attempt task reports it.
struct Done {
    index: usize,
    number: u32,
    started_at: Timestamp,
    input: Value,
    result: Result<AttemptReport, RunnerError>,
}

/// Why the driver stopped starting steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Failed,
    Cancelled,
    TimedOut,
}

/// Drives a claimed execution until it parks, finishes or loses its lease.
/// `slot` is false for a driver started only to act on a cancel or a pause:
/// it starts no step, and otherwise parks again at once (due now, so that a
/// driver with a slot takes over).
pub(super) async fn drive(inner: &Arc<Inner>, exec: Execution, driven: &Arc<Driven>, slot: bool) {
    let def = inner.definition(&exec).await;
    let (snapshots, pending) = watch::channel(Snapshot {
        execution: Arc::new(exec.clone()),
        consumed: 0,
        after: After::Hold,
    });
    let persister = tokio::spawn(persister(
        inner.clone(),
        driven.clone(),
        exec.version,
        pending,
    ));
    let mut run = Run {
        snapshots: Some(snapshots),
        persister: Some(persister),
        inner: inner.clone(),
        driven: driven.clone(),
        attempts_cancel: CancellationToken::new(),
        tasks: JoinSet::new(),
        secrets: BTreeMap::new(),
        redactor: Redactor::default(),
        stop: None,
        consumed: 0,
        exec,
    };
    if let Err(e) = run.read_events().await {
        tracing::error!(execution = %run.exec.execution_id, error = %e, "reading the inbox failed; the execution is retried");
        run.park(run.now()).await;
        return;
    }
    if run.exec.status.is_terminal() {
        // Claimed with nothing that reopens it (a resume does): put it back
        // off the claim path unchanged.
        run.send(After::Finish);
        run.flush().await;
        return;
    }
    if !slot && run.stop != Some(Stop::Cancelled) {
        let now = run.now();
        let at = match run.exec.status {
            Status::Paused => run.exec.deadline_at.unwrap_or(now),
            _ => now,
        };
        run.park(at).await;
        return;
    }
    match def {
        Ok(def) => run.go(&def).await,
        Err(message) => {
            run.exec.error = Some(ExecutionError {
                step_name: None,
                message,
                code: "definition_unavailable".into(),
            });
            run.finish(Status::Failed, None).await;
        }
    }
}

/// Commits the newest snapshot, then publishes it; ends once the driver
/// dropped its sender and the last snapshot is committed, or at once when
/// the lease is lost (after telling the driver).
async fn persister(
    inner: Arc<Inner>,
    driven: Arc<Driven>,
    mut version: u64,
    mut pending: watch::Receiver<Snapshot>,
) {
    while pending.changed().await.is_ok() {
        let snapshot = pending.borrow_and_update().clone();
        let Some(committed) = commit(&inner, &snapshot, version).await else {
            driven.lost.cancel();
            return;
        };
        version = committed;
        let id = snapshot.execution.execution_id.clone();
        inner.watchers.publish(
            &id,
            Published {
                version,
                execution: snapshot.execution,
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
    /// Cancels running attempts: on a cancel event, at the deadline, when a
    /// step fails, or when the lease is lost.
    attempts_cancel: CancellationToken,
    tasks: JoinSet<Done>,
    secrets: BTreeMap<String, String>,
    redactor: Redactor,
    stop: Option<Stop>,
    /// The last inbox event acted on.
    consumed: u64,
    exec: Execution,
}

impl Run {
    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Hands the current state to the persister; the lease stays held.
    fn save(&mut self) {
        self.settle_status();
        self.send(After::Hold);
    }

    fn send(&self, after: After) {
        if let Some(tx) = &self.snapshots {
            tx.send_replace(Snapshot {
                execution: Arc::new(self.exec.clone()),
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
            tracing::error!(execution = %self.exec.execution_id, error = %e, "the persister failed");
        }
    }

    /// Commits the current state with the lease released, due again at
    /// `wake_at`, and ends the drive.
    async fn park(&mut self, wake_at: Timestamp) {
        self.settle_status();
        self.send(After::Park(wake_at));
        self.flush().await;
    }

    /// Reads the inbox events not yet acted on and acts on them: a cancel
    /// stops the execution; a signal joins `pending_signals`, where a wait
    /// step takes it; a pause or a resume changes the status (see
    /// [`Run::pause`], [`Run::resume`]). Returns whether the state changed.
    async fn read_events(&mut self) -> Result<bool, store::Error> {
        let events = self
            .inner
            .store
            .events(&self.exec.execution_id, self.consumed)
            .await?;
        let changed = !events.is_empty();
        for event in events {
            self.consumed = self.consumed.max(event.seq);
            match event.kind {
                EventKind::Cancel => self.halt(Stop::Cancelled),
                EventKind::Signal => self.exec.pending_signals.push(PendingSignal {
                    sequence: event.seq,
                    name: event.name.unwrap_or_default(),
                    payload: event.payload.unwrap_or(Value::Null),
                    received_at: event.at,
                }),
                EventKind::Pause => self.pause(),
                EventKind::Resume => self.resume(),
            }
        }
        Ok(changed)
    }

    /// Enters `paused` unless the execution is stopping or paused already.
    fn pause(&mut self) {
        if self.stop.is_none()
            && !self.exec.status.is_terminal()
            && self.exec.status != Status::Paused
        {
            let now = self.now();
            self.exec.enter(Status::Paused, now);
        }
    }

    /// Continues a paused execution; ends a waiting execution's time waits
    /// now; restarts an execution that ended failed, cancelled or timed out
    /// from every step that did not succeed, with a fresh deadline and
    /// retry budget. Each is a history entry with reason `resume`, entering
    /// `running` (the driver moves on to `waiting` if a wait remains). Any
    /// other state has nothing to resume: the event changes nothing.
    fn resume(&mut self) {
        if self.stop.is_some() {
            return;
        }
        let now = self.now();
        match self.exec.status {
            Status::Paused => {}
            Status::Waiting => {
                let mut ended = false;
                for s in &mut self.exec.steps {
                    if s.status == StepStatus::Waiting
                        && let Some(w) = &mut s.waiting
                        && w.signal.is_none()
                    {
                        w.until = Some(now);
                        ended = true;
                    }
                }
                if !ended {
                    return;
                }
            }
            s if s.is_restartable() => {
                for step in &mut self.exec.steps {
                    if step.status != StepStatus::Succeeded {
                        step.status = StepStatus::Pending;
                        step.error = None;
                        step.output = None;
                        step.skipped_reason = None;
                        step.next_attempt_at = None;
                        step.waiting = None;
                        step.attempts_before_resume =
                            u32::try_from(step.attempts.len()).unwrap_or(u32::MAX);
                    }
                }
                let exec = &mut self.exec;
                exec.error = None;
                exec.output = None;
                exec.finished_at = None;
                exec.duration_ms = None;
                exec.deadline_at = None;
            }
            _ => return,
        }
        self.exec.enter_because(Status::Running, now, Some(RESUME));
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
        let now = self.now();
        let deadline = match self.exec.deadline_at {
            Some(d) => d,
            None => {
                let d = add(now, def.timeout());
                self.exec.deadline_at = Some(d);
                d
            }
        };
        // A step that was running at a crash starts again.
        for s in &mut self.exec.steps {
            if s.status == StepStatus::Running {
                s.status = StepStatus::Pending;
            }
        }
        if self.stop.is_none() {
            let names: Vec<String> = def.secret_names().into_iter().collect();
            if !names.is_empty() {
                match self.inner.secrets.open(&self.exec.tenant_id, &names).await {
                    Ok(values) => self.secrets = values,
                    Err(message) => {
                        self.exec.error = Some(ExecutionError {
                            step_name: None,
                            message,
                            code: "secrets_unavailable".into(),
                        });
                        self.finish(Status::Failed, None).await;
                        return;
                    }
                }
            }
        }
        let values: Vec<String> = self.secrets.values().cloned().collect();
        self.redactor = Redactor::new(values);
        if self.exec.status == Status::Queued && self.stop.is_none() {
            self.exec.enter(Status::Running, now);
            self.save();
        }

        let needs = def.needs();
        loop {
            let mut changed = false;
            let paused = self.exec.status == Status::Paused;
            if self.stop.is_none() {
                if self.now() >= deadline {
                    self.halt(Stop::TimedOut);
                } else if !paused {
                    changed = self.schedule(def, &needs, deadline);
                }
            }
            if changed {
                self.save();
            }
            // The next time something can happen: a retry, or the end of a
            // wait or of a signal's timeout.
            let next_time = self
                .exec
                .steps
                .iter()
                .filter_map(|s| match s.status {
                    StepStatus::Retrying => s.next_attempt_at,
                    StepStatus::Waiting => s.waiting.as_ref().and_then(|w| w.until),
                    _ => None,
                })
                .min();
            let waiting = self
                .exec
                .steps
                .iter()
                .any(|s| s.status == StepStatus::Waiting);
            let pending = self.exec.steps.iter().any(|s| {
                matches!(
                    s.status,
                    StepStatus::Pending | StepStatus::Retrying | StepStatus::Waiting
                )
            });
            if self.tasks.is_empty() && (self.stop.is_some() || !pending) {
                break;
            }
            if self.tasks.is_empty() && self.stop.is_none() && paused {
                // Paused, and the attempts that were running have finished:
                // park until the deadline or an event (a resume, a cancel).
                self.park(deadline).await;
                return;
            }
            if self.tasks.is_empty() && self.stop.is_none() && (next_time.is_some() || waiting) {
                // Nothing runs and nothing can start before the next time
                // (or a signal): park until then (or the deadline), holding
                // nothing.
                let at = next_time.map_or(deadline, |t| t.min(deadline));
                self.park(at).await;
                return;
            }
            if self.tasks.is_empty() && self.stop.is_none() && !changed {
                // Nothing runs and nothing can start: a step waits on a
                // dependency that will never settle. `validate` rules this
                // out; fail rather than hang if it ever happens.
                self.exec.error = Some(ExecutionError {
                    step_name: None,
                    message: "no step can start; the workflow's `needs` cannot be met".into(),
                    code: "stuck".into(),
                });
                self.halt(Stop::Failed);
                continue;
            }
            let clock = self.inner.clock.clone();
            let running = self.stop.is_none();
            let retries = running && !paused;
            let retry_timer = async {
                match next_time {
                    Some(at) if retries => clock.sleep_until(at).await,
                    _ => std::future::pending().await,
                }
            };
            let deadline_timer = async {
                if running {
                    clock.sleep_until(deadline).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let driven = self.driven.clone();
            let has_tasks = !self.tasks.is_empty();
            tokio::select! {
                done = self.tasks.join_next(), if has_tasks => {
                    if let Some(Ok(done)) = done {
                        self.record(def, done);
                        // Collect every other attempt that already finished,
                        // so that one commit covers them all.
                        while let Some(Ok(more)) = self.tasks.try_join_next() {
                            self.record(def, more);
                        }
                        self.save();
                    }
                }
                () = retry_timer => {}
                () = deadline_timer => self.halt(Stop::TimedOut),
                () = driven.events.notified() => {
                    match self.read_events().await {
                        Ok(true) => self.save(),
                        Ok(false) => {}
                        Err(e) => tracing::error!(execution = %self.exec.execution_id, error = %e, "reading the inbox failed; it is read again at the next notice"),
                    }
                }
                () = driven.lost.cancelled() => {
                    self.abandon().await;
                    return;
                }
            }
        }
        let status = match self.stop {
            Some(Stop::Cancelled) => Status::Cancelled,
            Some(Stop::TimedOut) => Status::TimedOut,
            Some(Stop::Failed) => Status::Failed,
            None if self
                .exec
                .steps
                .iter()
                .any(|s| s.status == StepStatus::Failed) =>
            {
                Status::PartiallySucceeded
            }
            None => Status::Succeeded,
        };
        self.finish(status, Some(def)).await;
    }

    /// Stops starting steps and interrupts the running attempts.
    fn halt(&mut self, why: Stop) {
        if self.stop.is_none() {
            self.stop = Some(why);
            if why == Stop::TimedOut && self.exec.error.is_none() {
                self.exec.error = Some(ExecutionError {
                    step_name: None,
                    message: "the workflow ran past its `timeout`".into(),
                    code: "timed_out".into(),
                });
            }
        }
        self.attempts_cancel.cancel();
    }

    /// Starts every step that can start; returns whether anything changed
    /// that must be persisted (skips and failures before any attempt).
    fn schedule(&mut self, def: &Definition, needs: &[Vec<usize>], deadline: Timestamp) -> bool {
        let now = self.now();
        let mut changed = self.settle_waits(def);
        for i in 0..self.exec.steps.len() {
            if self.stop.is_some() {
                break;
            }
            match self.exec.steps[i].status {
                StepStatus::Retrying
                    if self.exec.steps[i]
                        .next_attempt_at
                        .is_some_and(|at| at <= now) =>
                {
                    changed |= self.start(def, needs, i, deadline);
                }
                StepStatus::Pending => {
                    let deps = &needs[i];
                    // A cancelled need cannot occur here: the execution is
                    // stopping then, and nothing new starts.
                    if !deps.iter().all(|&d| self.exec.steps[d].status.is_settled()) {
                        continue;
                    }
                    if let Some(cond) = &def.steps[i].condition {
                        let scope = self.scope(needs, i);
                        match scope.condition(cond, &format!("$.steps[{i}].if")) {
                            Ok(true) => {}
                            Ok(false) => {
                                self.skip(i, format!("its condition `{cond}` is false"));
                                changed = true;
                                continue;
                            }
                            Err(e) => {
                                self.fail_before_attempt(def, i, e.to_string());
                                changed = true;
                                continue;
                            }
                        }
                    } else if let Some(&d) = deps.iter().find(|&&d| {
                        matches!(
                            self.exec.steps[d].status,
                            StepStatus::Skipped | StepStatus::Failed
                        )
                    }) {
                        let what = if self.exec.steps[d].status == StepStatus::Skipped {
                            "was skipped"
                        } else {
                            "failed"
                        };
                        let reason = format!("it needs `{}`, which {what}", self.exec.steps[d].id);
                        self.skip(i, reason);
                        changed = true;
                        continue;
                    }
                    if def.steps[i].wait.is_some() {
                        self.begin_wait(def, needs, i);
                        // A wait already over, or a signal already here,
                        // ends at once.
                        self.settle_waits(def);
                        changed = true;
                    } else {
                        changed |= self.start(def, needs, i, deadline);
                    }
                }
                _ => {}
            }
        }
        changed
    }

    fn skip(&mut self, i: usize, reason: String) {
        let step = &mut self.exec.steps[i];
        step.status = StepStatus::Skipped;
        step.skipped_reason = Some(reason);
    }

    /// What templates of step `i` see: the input, the execution, the
    /// workflow, and its ancestors' results.
    fn scope(&self, needs: &[Vec<usize>], i: usize) -> Scope {
        Scope::new(&self.root(ancestor_views(&self.exec, needs, i)))
    }

    fn root(&self, steps: Value) -> Value {
        json!({
            "input": self.exec.input_data,
            "steps": steps,
            "execution": {"id": self.exec.execution_id.as_str(), "created_at": self.exec.created_at.to_string()},
            "workflow": {"id": self.exec.workflow_id.as_str(), "version": self.exec.workflow_version},
        })
    }

    /// A template or config problem fails the step without an attempt.
    fn fail_before_attempt(&mut self, def: &Definition, i: usize, message: String) {
        let error = ExecutionError {
            step_name: Some(self.exec.steps[i].id.clone()),
            message: self.redactor.redact(&message),
            code: "template_error".into(),
        };
        self.fail_step(def, i, error);
    }

    fn fail_step(&mut self, def: &Definition, i: usize, error: ExecutionError) {
        let step = &mut self.exec.steps[i];
        step.status = StepStatus::Failed;
        step.next_attempt_at = None;
        step.error = Some(error.clone());
        if !def.steps[i].continue_on_error {
            self.exec.error = Some(error);
            self.halt(Stop::Failed);
        }
    }

    /// Starts the next attempt of step `i`; returns whether the step failed
    /// before it could start (which must be persisted).
    fn start(
        &mut self,
        def: &Definition,
        needs: &[Vec<usize>],
        i: usize,
        deadline: Timestamp,
    ) -> bool {
        let Some(digest) = self.exec.steps[i].digest else {
            self.fail_before_attempt(def, i, "the step has no component version".into());
            return true;
        };
        let input = match &def.steps[i].input {
            Some(t) => self
                .scope(needs, i)
                .render(t, &format!("$.steps[{i}].input")),
            None => Ok(match needs[i].as_slice() {
                [] => self.exec.input_data.clone(),
                [d] => self.exec.steps[*d].output.clone().unwrap_or(Value::Null),
                many => Value::Object(
                    many.iter()
                        .map(|&d| {
                            let s = &self.exec.steps[d];
                            (s.id.clone(), s.output.clone().unwrap_or(Value::Null))
                        })
                        .collect(),
                ),
            }),
        };
        let input = match input {
            Ok(v) => v,
            Err(e) => {
                self.fail_before_attempt(def, i, e.to_string());
                return true;
            }
        };
        let mut config = BTreeMap::new();
        if !def.steps[i].config.is_empty() {
            let mut root = self.root(ancestor_views(&self.exec, needs, i));
            root["secrets"] = json!(self.secrets);
            let with_secrets = Scope::new(&root);
            for (k, v) in &def.steps[i].config {
                match with_secrets.render(v, &format!("$.steps[{i}].config.{k}")) {
                    Ok(Value::String(s)) => {
                        config.insert(k.clone(), s);
                    }
                    Ok(other) => {
                        config.insert(k.clone(), other.to_string());
                    }
                    Err(e) => {
                        self.fail_before_attempt(def, i, e.to_string());
                        return true;
                    }
                }
            }
        }
        let now = self.now();
        let remaining = deadline
            .duration_since(now)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let step = &mut self.exec.steps[i];
        step.status = StepStatus::Running;
        step.next_attempt_at = None;
        let number = step.attempts.len() as u32 + 1;
        let spec = AttemptSpec {
            input: input.to_string(),
            overrides: def.overrides(i),
            remaining,
            caps: Capabilities {
                config,
                secrets: self.secrets.values().cloned().collect(),
            },
        };
        let inner = self.inner.clone();
        let tenant = self.exec.tenant_id.clone();
        let cancel = self.attempts_cancel.clone();
        self.tasks.spawn(async move {
            let result = {
                let _permit = inner.attempts.acquire().await;
                inner.runner.run(&tenant, &digest, &spec, &cancel).await
            };
            Done {
                index: i,
                number,
                started_at: now,
                input,
                result,
            }
        });
        false
    }

    /// Records a finished attempt and decides what the step does next.
    fn record(&mut self, def: &Definition, done: Done) {
        let i = done.index;
        let step_id = self.exec.steps[i].id.clone();
        let report = match done.result {
            Ok(r) => r,
            Err(e) => {
                let error = ExecutionError {
                    step_name: Some(step_id),
                    message: e.0,
                    code: "step_unavailable".into(),
                };
                self.fail_step(def, i, error);
                return;
            }
        };
        let finished_at = self.now();
        let mut attempt = attempt_from(
            done.number,
            &step_id,
            done.started_at,
            finished_at,
            &report.outcome,
            &report.metering,
            report.logs,
        );
        attempt.input = Some(self.redactor.redact_json(&done.input));
        if let Some(e) = &mut attempt.error {
            e.message = self.redactor.redact(&e.message);
        }
        if self.stop == Some(Stop::TimedOut) && matches!(report.outcome, Outcome::Cancelled) {
            attempt.outcome = "timed_out".into();
            attempt.error = Some(ExecutionError {
                step_name: Some(step_id.clone()),
                message: "interrupted at the workflow's deadline".into(),
                code: "timed_out".into(),
            });
        }
        let error = attempt.error.clone();
        let outcome_kind = attempt.outcome.clone();
        self.exec.steps[i].attempts.push(attempt);
        match report.outcome {
            Outcome::Succeeded { output } => match serde_json::from_str::<Value>(&output) {
                Ok(value) => {
                    let step = &mut self.exec.steps[i];
                    step.status = StepStatus::Succeeded;
                    step.output = Some(self.redactor.redact_json(&value));
                }
                Err(e) => self.fail_step(
                    def,
                    i,
                    ExecutionError {
                        step_name: Some(step_id),
                        message: format!("the step's output could not be read: {e}"),
                        code: "invalid_output".into(),
                    },
                ),
            },
            Outcome::Cancelled if self.stop.is_some() => {
                let step = &mut self.exec.steps[i];
                step.status = StepStatus::Cancelled;
                if self.stop == Some(Stop::TimedOut) {
                    step.error = error;
                }
            }
            outcome => {
                let error = error.unwrap_or_else(|| ExecutionError {
                    step_name: Some(step_id.clone()),
                    message: outcome.describe(),
                    code: outcome_kind.clone(),
                });
                let policy = def.retry(i);
                let retryable = match &outcome {
                    Outcome::Failed { error } => error.retryable,
                    _ => policy.retry_on.iter().any(|r| r.outcome() == outcome_kind),
                };
                // Attempts before the last resume do not count.
                let made = done
                    .number
                    .saturating_sub(self.exec.steps[i].attempts_before_resume);
                if retryable && made < policy.max_attempts && self.stop.is_none() {
                    let random = random_unit();
                    let delay = policy.jittered(policy.delay_after(made), random);
                    let step = &mut self.exec.steps[i];
                    step.status = StepStatus::Retrying;
                    step.next_attempt_at = Some(add(finished_at, delay));
                    step.error = Some(error);
                } else {
                    self.fail_step(def, i, error);
                }
            }
        }
    }

    /// Settles the remaining steps, builds the output and persists the
    /// terminal state.
    async fn finish(&mut self, status: Status, def: Option<&Definition>) {
        // Attempts interrupted by the stop report back first.
        while let Some(done) = self.tasks.join_next().await {
            if let (Ok(done), Some(def)) = (done, def) {
                self.record(def, done);
            }
        }
        let mut status = status;
        for s in &mut self.exec.steps {
            if matches!(
                s.status,
                StepStatus::Pending
                    | StepStatus::Running
                    | StepStatus::Retrying
                    | StepStatus::Waiting
            ) {
                s.status = StepStatus::Cancelled;
                s.next_attempt_at = None;
            }
        }
        if matches!(status, Status::Succeeded | Status::PartiallySucceeded)
            && let Some(def) = def
        {
            match &def.output {
                None => {
                    self.exec.output = self.exec.steps.last().and_then(|s| s.output.clone());
                }
                Some(template) => {
                    let steps = Value::Object(
                        self.exec
                            .steps
                            .iter()
                            .map(|s| (s.id.clone(), step_view(s)))
                            .collect(),
                    );
                    match Scope::new(&self.root(steps)).render(template, "$.output") {
                        Ok(v) => self.exec.output = Some(self.redactor.redact_json(&v)),
                        Err(e) => {
                            self.exec.error = Some(ExecutionError {
                                step_name: None,
                                message: self.redactor.redact(&e.to_string()),
                                code: "template_error".into(),
                            });
                            status = Status::Failed;
                        }
                    }
                }
            }
        }
        let now = self.now();
        self.exec.enter(status, now);
        self.send(After::Finish);
        self.flush().await;
    }
}

fn step_view(s: &crate::model::StepRun) -> Value {
    json!({
        "status": s.status,
        "output": s.output,
        "error": s.error,
        "skipped_reason": s.skipped_reason,
    })
}

/// The views of step `i`'s ancestors, by step id.
fn ancestor_views(exec: &Execution, needs: &[Vec<usize>], i: usize) -> Value {
    let mut steps = serde_json::Map::new();
    let mut stack = needs[i].clone();
    while let Some(j) = stack.pop() {
        let s = &exec.steps[j];
        if steps.contains_key(&s.id) {
            continue;
        }
        steps.insert(s.id.clone(), step_view(s));
        stack.extend(needs[j].iter().copied());
    }
    Value::Object(steps)
}

/// The history reason of a transition a client's resume caused.
pub(super) const RESUME: &str = "resume";

/// `at + d`, saturating at the end of time.
pub(super) fn add(at: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(jiff::Timestamp::MAX)
}

/// A random number in [0, 1) for jitter.
fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

//! Cron schedules: creating and changing them, and the loop that fires
//! their ticks.
//!
//! A schedule is a row in the store with a `wake_at`, due like any other
//! work. The schedule loop reads due schedules, asks the pure core
//! (`plan`) what each does now, and writes the schedule's new state
//! together with the execution a tick starts in one compare-and-set
//! transaction ([`crate::store::Store::write_schedule`]): a tick starts at
//! most one execution across restarts and processes, and a fire that loses
//! the race to another writer is dropped. Clients' changes go through the
//! same compare-and-set, retried on a conflict.

mod cron;
mod plan;

use std::time::Duration;

use tokio::task::JoinSet;

pub use self::cron::Cron;
use super::{Engine, Error, Problem, Submission, VersionSel, work};
use crate::model::{
    EventKind, Execution, ExecutionId, FireError, NewEvent, Overlap, Schedule, ScheduleId,
    ScheduleRun, ScheduleState, TenantId, Timestamp, WorkflowId,
};
use crate::store::{ScheduleWrite, Sent, Start};

/// How many due schedules one round of the loop handles (concurrently).
const BATCH: usize = 64;

/// How many times a client's change is retried when a tick wrote the
/// schedule in between.
const CAS_TRIES: usize = 20;

/// What a client asks for when creating a schedule.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// The id to use; generated when absent.
    pub schedule_id: Option<ScheduleId>,
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// Its version (latest: the newest at each tick).
    pub workflow_version: VersionSel,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub timezone: String,
    /// Input of every execution.
    pub input_data: serde_json::Value,
    /// Client data copied to every execution.
    pub custom_data: Option<serde_json::Value>,
    /// Where callbacks about every execution go.
    pub callback: Option<crate::model::Callback>,
    /// The overlap policy.
    pub overlap: Overlap,
    /// How old a missed tick may be and still fire.
    pub catchup_window: Duration,
    /// No tick before.
    pub start_at: Option<Timestamp>,
    /// No tick after.
    pub end_at: Option<Timestamp>,
    /// Create it paused.
    pub paused: bool,
    /// Free text.
    pub description: Option<String>,
}

/// A client's change to a schedule: each field given replaces the stored
/// one.
#[derive(Debug, Clone, Default)]
pub struct ScheduleChange {
    /// The workflow.
    pub workflow_id: Option<WorkflowId>,
    /// Its version.
    pub workflow_version: Option<VersionSel>,
    /// The cron expression.
    pub cron: Option<String>,
    /// The time zone.
    pub timezone: Option<String>,
    /// The input.
    pub input_data: Option<serde_json::Value>,
    /// Client data (`Some(None)` clears it).
    pub custom_data: Option<Option<serde_json::Value>>,
    /// The callback (`Some(None)` clears it).
    pub callback: Option<Option<crate::model::Callback>>,
    /// The overlap policy.
    pub overlap: Option<Overlap>,
    /// The catch-up window.
    pub catchup_window: Option<Duration>,
    /// No tick before (`Some(None)` clears it).
    pub start_at: Option<Option<Timestamp>>,
    /// No tick after (`Some(None)` clears it).
    pub end_at: Option<Option<Timestamp>>,
    /// Pause or resume it.
    pub paused: Option<bool>,
    /// Free text (`Some(None)` clears it).
    pub description: Option<Option<String>>,
}

/// A schedule with what the API shows beside the record.
#[derive(Debug, Clone)]
pub struct ScheduleView {
    /// The record.
    pub schedule: Schedule,
    /// The next ticks (at most 5) while it is active.
    pub next_fire_times: Vec<Timestamp>,
    /// The statuses of `last_executions`, in the same order (`None`: the
    /// execution is gone).
    pub statuses: Vec<Option<crate::model::Status>>,
}

fn invalid(field: &str, message: String) -> Error {
    Error::Invalid(
        "the schedule does not fit".into(),
        vec![Problem {
            path: format!("$.{field}"),
            message,
        }],
    )
}

fn version_of(sel: VersionSel) -> Option<u32> {
    match sel {
        VersionSel::Latest => None,
        VersionSel::Exact(v) => Some(v),
    }
}

fn sel_of(version: Option<u32>) -> VersionSel {
    version.map_or(VersionSel::Latest, VersionSel::Exact)
}

/// The schedule's cron, or the problem with its fields.
fn cron_of(s: &Schedule) -> Result<Cron, Error> {
    Cron::parse(&s.cron, &s.timezone).map_err(|e| invalid(e.field, e.message))
}

fn check_window(s: &Schedule) -> Result<(), Error> {
    if let (Some(start), Some(end)) = (s.start_at, s.end_at)
        && end <= start
    {
        return Err(invalid(
            "end_at",
            format!("`end_at` ({end}) must be after `start_at` ({start})"),
        ));
    }
    Ok(())
}

impl Engine {
    /// Creates a schedule after checking that its cron, time zone, window,
    /// workflow and input are valid (the input is resolved as a run would
    /// be).
    pub async fn create_schedule(
        &self,
        tenant: &TenantId,
        new: NewSchedule,
    ) -> Result<ScheduleView, Error> {
        let now = self.inner.clock.now();
        let mut s = Schedule {
            schedule_id: new.schedule_id.unwrap_or_else(ScheduleId::generate),
            tenant_id: tenant.clone(),
            workflow_id: new.workflow_id,
            workflow_version: version_of(new.workflow_version),
            cron: new.cron.trim().to_owned(),
            timezone: new.timezone,
            input_data: new.input_data,
            custom_data: new.custom_data,
            callback: new.callback,
            overlap: new.overlap,
            catchup_window: new.catchup_window,
            start_at: new.start_at,
            end_at: new.end_at,
            description: new.description,
            state: if new.paused {
                ScheduleState::Paused
            } else {
                ScheduleState::Active
            },
            invalid_reason: None,
            last_error: None,
            next_fire_at: None,
            buffered_at: None,
            fired: 0,
            skipped: 0,
            missed: 0,
            last_executions: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 0,
        };
        let cron = cron_of(&s)?;
        check_window(&s)?;
        self.resolve(tenant, self.submission(&s)).await?;
        s.next_fire_at = plan::first_tick(&cron, now, s.start_at);
        s.state = settled_state(&s);
        self.inner
            .store
            .create_schedule(&s, plan::wake_at(&s))
            .await?;
        s.version = 1;
        self.inner.schedule_wake.notify_one();
        self.view(s).await
    }

    /// A schedule of a tenant, with its next ticks and the statuses of its
    /// last executions.
    pub async fn schedule(
        &self,
        tenant: &TenantId,
        id: &ScheduleId,
    ) -> Result<ScheduleView, Error> {
        let s = self.load_schedule(tenant, id).await?;
        self.view(s).await
    }

    async fn load_schedule(&self, tenant: &TenantId, id: &ScheduleId) -> Result<Schedule, Error> {
        self.inner
            .store
            .schedule(tenant, id)
            .await?
            .ok_or_else(|| Error::ScheduleNotFound(id.to_string()))
    }

    /// Adds what the API shows beside the record.
    pub async fn view(&self, schedule: Schedule) -> Result<ScheduleView, Error> {
        let next_fire_times = next_fire_times(&schedule);
        let statuses = self.statuses(&schedule).await?;
        Ok(ScheduleView {
            schedule,
            next_fire_times,
            statuses,
        })
    }

    /// Applies a client's change with compare-and-set, retried when a tick
    /// wrote the schedule in between. A change of the cron, time zone or
    /// window, and any change of an `invalid` or `completed` schedule, plans
    /// the ticks afresh from now; an `invalid` schedule whose change
    /// resolves becomes `active` again.
    pub async fn update_schedule(
        &self,
        tenant: &TenantId,
        id: &ScheduleId,
        change: ScheduleChange,
    ) -> Result<ScheduleView, Error> {
        self.change_schedule(tenant, id, |engine, s, now| {
            let change = change.clone();
            Box::pin(async move {
                let retime = change.cron.is_some()
                    || change.timezone.is_some()
                    || change.start_at.is_some()
                    || change.end_at.is_some()
                    || matches!(s.state, ScheduleState::Invalid | ScheduleState::Completed);
                if let Some(w) = change.workflow_id {
                    s.workflow_id = w;
                }
                if let Some(v) = change.workflow_version {
                    s.workflow_version = version_of(v);
                }
                if let Some(c) = change.cron {
                    s.cron = c.trim().to_owned();
                }
                if let Some(tz) = change.timezone {
                    s.timezone = tz;
                }
                if let Some(i) = change.input_data {
                    s.input_data = i;
                }
                if let Some(c) = change.custom_data {
                    s.custom_data = c;
                }
                if let Some(c) = change.callback.clone() {
                    s.callback = c;
                }
                if let Some(o) = change.overlap {
                    s.overlap = o;
                }
                if let Some(w) = change.catchup_window {
                    s.catchup_window = w;
                }
                if let Some(a) = change.start_at {
                    s.start_at = a;
                }
                if let Some(e) = change.end_at {
                    s.end_at = e;
                }
                if let Some(d) = change.description {
                    s.description = d;
                }
                let cron = cron_of(s)?;
                check_window(s)?;
                engine.resolve(&s.tenant_id, engine.submission(s)).await?;
                let paused = change.paused.unwrap_or(s.state == ScheduleState::Paused);
                s.state = if paused {
                    ScheduleState::Paused
                } else {
                    ScheduleState::Active
                };
                s.invalid_reason = None;
                if retime || change.paused == Some(false) {
                    s.next_fire_at = plan::first_tick(&cron, now, s.start_at);
                    s.buffered_at = None;
                }
                s.state = settled_state(s);
                s.updated_at = now;
                Ok(())
            })
        })
        .await
    }

    /// Pauses a schedule: ticks pass without firing and are not caught up
    /// on resume. Pausing a paused schedule changes nothing.
    pub async fn pause_schedule(
        &self,
        tenant: &TenantId,
        id: &ScheduleId,
    ) -> Result<ScheduleView, Error> {
        self.change_schedule(tenant, id, |_, s, now| {
            Box::pin(async move {
                match s.state {
                    ScheduleState::Active | ScheduleState::Paused => {
                        s.state = ScheduleState::Paused;
                        s.updated_at = now;
                        Ok(())
                    }
                    other => Err(Error::NotAllowed(format!(
                        "schedule `{}` is {}: only an active schedule can be paused",
                        s.schedule_id,
                        other.as_str()
                    ))),
                }
            })
        })
        .await
    }

    /// Resumes a paused schedule from now (the ticks it passed while
    /// paused do not fire). Resuming an active schedule changes nothing.
    pub async fn resume_schedule(
        &self,
        tenant: &TenantId,
        id: &ScheduleId,
    ) -> Result<ScheduleView, Error> {
        self.change_schedule(tenant, id, |_, s, now| {
            Box::pin(async move {
                match s.state {
                    ScheduleState::Active => Ok(()),
                    ScheduleState::Paused => {
                        let cron = cron_of(s)?;
                        s.state = ScheduleState::Active;
                        s.next_fire_at = plan::first_tick(&cron, now, s.start_at);
                        s.buffered_at = None;
                        s.state = settled_state(s);
                        s.updated_at = now;
                        Ok(())
                    }
                    other => Err(Error::NotAllowed(format!(
                        "schedule `{}` is {}: update it (PATCH) to make it active again",
                        s.schedule_id,
                        other.as_str()
                    ))),
                }
            })
        })
        .await
    }

    /// Runs a schedule's workflow once now, whatever its state and overlap
    /// policy; the execution carries the schedule's id, `scheduled_at` is
    /// now, and it counts among the schedule's runs.
    pub async fn trigger_schedule(
        &self,
        tenant: &TenantId,
        id: &ScheduleId,
    ) -> Result<Execution, Error> {
        for _ in 0..CAS_TRIES {
            let mut s = self.load_schedule(tenant, id).await?;
            let now = self.inner.clock.now();
            let version = s.version;
            let wake = plan::wake_at(&s);
            if let Some(exec) = self.start_run(&mut s, version, wake, now, true).await? {
                return Ok(exec);
            }
        }
        Err(Error::Busy(format!(
            "schedule `{id}` changes too often to trigger it; try again"
        )))
    }

    /// Deletes a schedule; its executions stay.
    pub async fn delete_schedule(&self, tenant: &TenantId, id: &ScheduleId) -> Result<(), Error> {
        if self.inner.store.delete_schedule(tenant, id).await? {
            Ok(())
        } else {
            Err(Error::ScheduleNotFound(id.to_string()))
        }
    }

    /// The submission a schedule's tick makes.
    fn submission(&self, s: &Schedule) -> Submission {
        Submission {
            workflow_id: s.workflow_id.clone(),
            version: sel_of(s.workflow_version),
            input_data: s.input_data.clone(),
            custom_data: s.custom_data.clone(),
            start: None,
            callback: s.callback.clone(),
        }
    }

    /// Reads, changes and writes a schedule with compare-and-set, retrying
    /// when another write came in between.
    async fn change_schedule<F>(
        &self,
        tenant: &TenantId,
        id: &ScheduleId,
        change: F,
    ) -> Result<ScheduleView, Error>
    where
        F: for<'a> Fn(
            &'a Engine,
            &'a mut Schedule,
            Timestamp,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), Error>> + Send + 'a>,
        >,
    {
        for _ in 0..CAS_TRIES {
            let mut s = self.load_schedule(tenant, id).await?;
            let before = s.clone();
            let now = self.inner.clock.now();
            change(self, &mut s, now).await?;
            if s == before {
                return self.view(s).await;
            }
            let write = ScheduleWrite {
                schedule: &s,
                version: s.version,
                wake_at: plan::wake_at(&s),
                start: None,
            };
            if let Some(version) = self.inner.store.write_schedule(write).await? {
                s.version = version;
                self.inner.schedule_wake.notify_one();
                return self.view(s).await;
            }
        }
        Err(Error::Busy(format!(
            "schedule `{id}` changes too often to change it; try again"
        )))
    }

    /// Starts an execution of a schedule for `scheduled_at` (a tick, or a
    /// trigger at now), writing the schedule with it. `None`: the schedule
    /// changed meanwhile and nothing was written. A resolve failure of a
    /// tick marks the schedule invalid; a trigger's is the caller's error.
    async fn start_run(
        &self,
        s: &mut Schedule,
        version: u64,
        wake_at: Option<Timestamp>,
        scheduled_at: Timestamp,
        triggered: bool,
    ) -> Result<Option<Execution>, Error> {
        let mut exec = self.resolve(&s.tenant_id, self.submission(s)).await?;
        exec.schedule_id = Some(s.schedule_id.clone());
        exec.scheduled_at = Some(scheduled_at);
        s.started(ScheduleRun {
            execution_id: exec.execution_id.clone(),
            scheduled_at,
            triggered,
        });
        let (permit, lease) = work::fast_slot(&self.inner).unzip();
        let mark = work::unrouted_mark(&self.inner);
        let write = ScheduleWrite {
            schedule: s,
            version,
            wake_at,
            start: Some(Start {
                execution: &exec,
                lease: lease.as_ref(),
                tick: (!triggered).then_some(scheduled_at),
            }),
        };
        let Some(_) = self.inner.store.write_schedule(write).await? else {
            return Ok(None);
        };
        exec.version = 1;
        work::launch(&self.inner, exec.clone(), permit, mark);
        Ok(Some(exec))
    }

    /// Handles one due schedule: plans it and writes the outcome.
    async fn fire(&self, s: Schedule) -> Result<(), Error> {
        let now = self.inner.clock.now();
        let cron = match cron_of(&s) {
            Ok(cron) => cron,
            Err(e) => return self.mark_invalid(s, now, None, describe(&e)).await,
        };
        let unfinished = self.unfinished(&s).await?;
        let p = plan::plan(&s, &cron, now, &unfinished);
        let mut next = p.schedule;
        let wake = plan::wake_at(&next);
        match p.action {
            plan::Action::Nothing => {
                // Written even when unchanged: the row was due, and its
                // `wake_at` moves on.
                let write = ScheduleWrite {
                    schedule: &next,
                    version: s.version,
                    wake_at: wake,
                    start: None,
                };
                self.inner.store.write_schedule(write).await?;
            }
            plan::Action::Start {
                scheduled_at,
                cancel,
            } => match self
                .start_run(&mut next, s.version, wake, scheduled_at, false)
                .await
            {
                Ok(Some(_)) => {
                    for id in cancel {
                        self.cancel_quietly(&s.tenant_id, &id).await;
                    }
                }
                Ok(None) => {}
                Err(
                    e @ (Error::WorkflowNotFound(_) | Error::Invalid(..) | Error::Unprocessable(_)),
                ) => {
                    return self
                        .mark_invalid(next, now, Some(scheduled_at), describe(&e))
                        .await;
                }
                Err(e) => return Err(e),
            },
        }
        Ok(())
    }

    /// Records a failed fire: the schedule is `invalid` until updated.
    async fn mark_invalid(
        &self,
        mut s: Schedule,
        now: Timestamp,
        tick: Option<Timestamp>,
        reason: String,
    ) -> Result<(), Error> {
        tracing::warn!(schedule = %s.schedule_id, tenant = %s.tenant_id, %reason, "a schedule's fire failed; the schedule is invalid until updated");
        let version = s.version;
        s.state = ScheduleState::Invalid;
        s.last_error = Some(FireError {
            at: now,
            scheduled_at: tick.unwrap_or(now),
            message: reason.clone(),
        });
        s.invalid_reason = Some(reason);
        let write = ScheduleWrite {
            schedule: &s,
            version,
            wake_at: None,
            start: None,
        };
        self.inner.store.write_schedule(write).await?;
        Ok(())
    }

    /// The schedule's executions that have not finished, newest first, as
    /// far as the plan needs them: none looked up for `allow_all` without a
    /// buffered tick, every one for `cancel_other` (it cancels them all),
    /// else only the first found (the plan asks whether there is one).
    async fn unfinished(&self, s: &Schedule) -> Result<Vec<ExecutionId>, Error> {
        if s.overlap == Overlap::AllowAll && s.buffered_at.is_none() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for run in &s.last_executions {
            if self
                .status(s, &run.execution_id)
                .await?
                .is_some_and(|st| !st.is_terminal())
            {
                out.push(run.execution_id.clone());
                if s.overlap != Overlap::CancelOther {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The current statuses of a schedule's `last_executions`, in order
    /// (`None`: the execution is gone).
    async fn statuses(&self, s: &Schedule) -> Result<Vec<Option<crate::model::Status>>, Error> {
        let mut out = Vec::with_capacity(s.last_executions.len());
        for run in &s.last_executions {
            out.push(self.status(s, &run.execution_id).await?);
        }
        Ok(out)
    }

    /// The status of one of a schedule's executions (`None`: it is gone).
    async fn status(
        &self,
        s: &Schedule,
        id: &ExecutionId,
    ) -> Result<Option<crate::model::Status>, Error> {
        let e = self.inner.store.execution(&s.tenant_id, id).await?;
        Ok(e.map(|e| e.status))
    }

    /// Sends a cancel to an execution without waiting for it to stop
    /// (`cancel_other`); an execution that finished meanwhile is left be.
    async fn cancel_quietly(&self, tenant: &TenantId, id: &ExecutionId) {
        let event = NewEvent {
            kind: EventKind::Cancel,
            name: None,
            payload: None,
            idempotency_key: None,
            at: self.inner.clock.now(),
        };
        match self.inner.store.send_event(tenant, id, &event).await {
            Ok(Sent::Stored(_)) => {
                if let Err(e) = work::deliver(&self.inner, tenant, id).await {
                    tracing::warn!(execution = %id, error = %e, "delivering a schedule's cancel failed; the execution finds it at its next claim");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(execution = %id, error = %e, "a schedule could not cancel its earlier execution");
            }
        }
    }
}

/// The next ticks of an active schedule (at most 5, none past `end_at`).
pub fn next_fire_times(schedule: &Schedule) -> Vec<Timestamp> {
    match (schedule.state, schedule.next_fire_at) {
        (ScheduleState::Active, Some(first)) => {
            let mut times = vec![first];
            if let Ok(cron) = cron_of(schedule) {
                times.extend(cron.upcoming(first, 4));
            }
            times.retain(|t| schedule.end_at.is_none_or(|end| *t <= end));
            times
        }
        _ => Vec::new(),
    }
}

/// An error as one line, with every problem and its path.
fn describe(e: &Error) -> String {
    match e {
        Error::Invalid(detail, problems) => {
            let problems: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect();
            format!("{detail}: {}", problems.join("; "))
        }
        other => other.to_string(),
    }
}

/// `completed` when no tick is left, else the state as it is.
fn settled_state(s: &Schedule) -> ScheduleState {
    let done = match s.next_fire_at {
        None => true,
        Some(t) => s.end_at.is_some_and(|end| t > end),
    };
    if done && s.state == ScheduleState::Active {
        ScheduleState::Completed
    } else {
        s.state
    }
}

/// The schedule loop: fires due schedules, then sleeps until the earliest
/// due one, an in-process wake-up (a schedule created or changed, an
/// execution of a schedule finished), or the poll interval.
pub(super) async fn run(weak: std::sync::Weak<super::Inner>) {
    loop {
        let (engine, wake, clock, poll, draining) = {
            let Some(inner) = weak.upgrade() else { return };
            if inner.draining.is_cancelled() {
                return;
            }
            (
                Engine {
                    inner: inner.clone(),
                },
                inner.schedule_wake.clone(),
                inner.clock.clone(),
                inner.poll_interval,
                inner.draining.clone(),
            )
        };
        let until = match round(&engine).await {
            Ok(true) => {
                tokio::task::yield_now().await;
                continue;
            }
            Ok(false) => engine.inner.store.next_schedule_at().await.unwrap_or(None),
            Err(e) => {
                tracing::error!(error = %e, "firing schedules failed; retrying");
                None
            }
        };
        drop(engine);
        let now = clock.now();
        let timer = async {
            match until.filter(|&at| at > now) {
                Some(at) => clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wake.notified() => {}
            () = timer => {}
            () = tokio::time::sleep(poll) => {}
            () = draining.cancelled() => return,
        }
    }
}

/// One round: fires up to [`BATCH`] due schedules at once; `true` when
/// the batch was full (go again at once).
async fn round(engine: &Engine) -> Result<bool, Error> {
    let now = engine.inner.clock.now();
    let due = engine.inner.store.due_schedules(now, BATCH).await?;
    let full = due.len() == BATCH;
    let mut fires = JoinSet::new();
    for s in due {
        let engine = engine.clone();
        fires.spawn(async move {
            let id = s.schedule_id.clone();
            if let Err(e) = engine.fire(s).await {
                tracing::error!(schedule = %id, error = %e, "firing a schedule failed; retrying at the next round");
            }
        });
    }
    while fires.join_next().await.is_some() {}
    // A schedule that stays due (a store failure) is retried at the next
    // poll, not in a busy loop.
    Ok(full)
}

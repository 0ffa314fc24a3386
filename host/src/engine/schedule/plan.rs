//! What a due schedule does now: the pure core of the scheduler.
//!
//! [`plan`] takes a schedule, its cron, the time and which of its
//! executions are unfinished, and returns the schedule's new state and at
//! most one execution to start. Ticks are handled oldest first, one start
//! per plan (each start is its own transaction with the tick, so a crash
//! between two leaves the second for the next plan). Ticks older than the
//! catch-up window are counted as missed; a tick that meets an unfinished
//! execution follows the overlap policy. No clock, store or await.

use std::time::Duration;

use super::cron::Cron;
use crate::model::{ExecutionId, Overlap, Schedule, ScheduleState, Timestamp};

/// The most missed ticks one plan counts before it returns (the schedule
/// stays due and the next plan goes on), so that a per-second schedule
/// after a long downtime cannot hold the scheduler.
pub(super) const MAX_TICKS_PER_PLAN: usize = 10_000;

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// Start an execution for this tick, after cancelling these.
    Start {
        /// The nominal tick.
        scheduled_at: Timestamp,
        /// Unfinished executions to cancel first (`cancel_other`).
        cancel: Vec<ExecutionId>,
    },
    /// Nothing to start.
    Nothing,
}

/// The outcome of a plan.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    /// The schedule's new state.
    pub(super) schedule: Schedule,
    /// What to start.
    pub(super) action: Action,
    /// Whether `schedule` differs from the input (a write is needed).
    pub(super) changed: bool,
}

/// Plans a due schedule at `now`; `unfinished` are its executions that
/// have not finished, newest first.
pub(super) fn plan(
    schedule: &Schedule,
    cron: &Cron,
    now: Timestamp,
    unfinished: &[ExecutionId],
) -> Plan {
    let mut s = schedule.clone();
    let action = decide(&mut s, cron, now, unfinished);
    let changed = s != *schedule;
    Plan {
        schedule: s,
        action,
        changed,
    }
}

fn decide(s: &mut Schedule, cron: &Cron, now: Timestamp, unfinished: &[ExecutionId]) -> Action {
    if s.state != ScheduleState::Active {
        return Action::Nothing;
    }
    if let Some(at) = s.buffered_at
        && unfinished.is_empty()
    {
        s.buffered_at = None;
        return Action::Start {
            scheduled_at: at,
            cancel: Vec::new(),
        };
    }
    for _ in 0..MAX_TICKS_PER_PLAN {
        let Some(tick) = s.next_fire_at else {
            s.state = ScheduleState::Completed;
            return Action::Nothing;
        };
        if s.end_at.is_some_and(|end| tick > end) {
            s.next_fire_at = None;
            s.state = ScheduleState::Completed;
            return Action::Nothing;
        }
        if tick > now {
            return Action::Nothing;
        }
        s.next_fire_at = cron.next_after(tick);
        if age(now, tick) > s.catchup_window {
            s.missed += 1;
            continue;
        }
        if unfinished.is_empty() {
            return start(tick, Vec::new());
        }
        match s.overlap {
            Overlap::AllowAll => return start(tick, Vec::new()),
            Overlap::CancelOther => return start(tick, unfinished.to_vec()),
            Overlap::Skip => s.skipped += 1,
            Overlap::BufferOne if s.buffered_at.is_none() => s.buffered_at = Some(tick),
            Overlap::BufferOne => s.skipped += 1,
        }
    }
    Action::Nothing
}

fn start(scheduled_at: Timestamp, cancel: Vec<ExecutionId>) -> Action {
    Action::Start {
        scheduled_at,
        cancel,
    }
}

/// How long ago `tick` was at `now`.
fn age(now: Timestamp, tick: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(tick)).unwrap_or(Duration::ZERO)
}

/// When a schedule in this state is next due, as the store keeps it.
pub(super) fn wake_at(s: &Schedule) -> Option<Timestamp> {
    match s.state {
        ScheduleState::Active => s.next_fire_at,
        ScheduleState::Paused | ScheduleState::Invalid | ScheduleState::Completed => None,
    }
}

/// The first tick of a schedule created, resumed or changed at `now`: the
/// first after `now`, or, with a later `start_at`, the first at or after
/// it (a tick at `start_at` itself fires).
pub(super) fn first_tick(
    cron: &Cron,
    now: Timestamp,
    start_at: Option<Timestamp>,
) -> Option<Timestamp> {
    match start_at {
        // `next_after` is strict; one nanosecond back makes `start` count.
        Some(start) if start > now => cron.next_after(
            start
                .checked_sub(jiff::SignedDuration::from_nanos(1))
                .unwrap_or(start),
        ),
        _ => cron.next_after(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ScheduleId, ScheduleRun, TenantId, WorkflowId};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const T0: &str = "2030-01-01T00:00:00Z";

    /// Every minute, UTC, created at T0.
    fn every_minute(overlap: Overlap) -> (Schedule, Cron) {
        let cron = Cron::parse("* * * * *", "UTC").unwrap();
        let s = Schedule {
            schedule_id: ScheduleId::new_unchecked("s"),
            tenant_id: TenantId::new_unchecked("t"),
            workflow_id: WorkflowId::new_unchecked("w"),
            workflow_version: None,
            cron: "* * * * *".into(),
            timezone: "UTC".into(),
            input_data: serde_json::json!({}),
            custom_data: None,
            callback: None,
            overlap,
            catchup_window: Schedule::CATCHUP_WINDOW,
            start_at: None,
            end_at: None,
            description: None,
            state: ScheduleState::Active,
            invalid_reason: None,
            last_error: None,
            next_fire_at: Some(at(T0)),
            buffered_at: None,
            fired: 0,
            skipped: 0,
            missed: 0,
            last_executions: Vec::new(),
            created_at: at(T0),
            updated_at: at(T0),
            version: 1,
        };
        (s, cron)
    }

    fn started(p: &Plan) -> Option<String> {
        match &p.action {
            Action::Start { scheduled_at, .. } => Some(scheduled_at.to_string()),
            Action::Nothing => None,
        }
    }

    /// Plans until nothing more starts, recording the starts as the shell
    /// would; returns the ticks started.
    fn drain(
        s: &mut Schedule,
        cron: &Cron,
        now: Timestamp,
        unfinished: &[ExecutionId],
    ) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let p = plan(s, cron, now, unfinished);
            *s = p.schedule.clone();
            match p.action {
                Action::Start { scheduled_at, .. } => {
                    s.started(ScheduleRun {
                        execution_id: ExecutionId::generate(),
                        scheduled_at,
                        triggered: false,
                    });
                    out.push(scheduled_at.to_string());
                }
                // A plan that stopped counting leaves the schedule due.
                Action::Nothing if wake_at(s).is_some_and(|w| w <= now) => {}
                Action::Nothing => return out,
            }
        }
    }

    #[test]
    fn the_first_tick_is_after_now_or_at_start_at() {
        let (_, cron) = every_minute(Overlap::Skip);
        assert_eq!(
            first_tick(&cron, at(T0), None),
            Some(at("2030-01-01T00:01:00Z"))
        );
        assert_eq!(
            first_tick(&cron, at(T0), Some(at("2030-01-01T05:00:00Z"))),
            Some(at("2030-01-01T05:00:00Z"))
        );
        // A `start_at` already past changes nothing.
        assert_eq!(
            first_tick(&cron, at("2030-01-01T00:00:30Z"), Some(at(T0))),
            Some(at("2030-01-01T00:01:00Z"))
        );
    }

    #[test]
    fn nothing_starts_before_the_tick_and_one_starts_at_it() {
        let (mut s, cron) = every_minute(Overlap::Skip);
        s.next_fire_at = Some(at("2030-01-01T00:01:00Z"));
        let p = plan(&s, &cron, at("2030-01-01T00:00:59Z"), &[]);
        assert_eq!(started(&p), None);
        assert!(!p.changed);
        let p = plan(&s, &cron, at("2030-01-01T00:01:00Z"), &[]);
        assert_eq!(started(&p).as_deref(), Some("2030-01-01T00:01:00Z"));
        assert_eq!(p.schedule.next_fire_at, Some(at("2030-01-01T00:02:00Z")));
    }

    #[test]
    fn after_downtime_only_the_window_fires_oldest_first_and_the_rest_is_missed() {
        let (mut s, cron) = every_minute(Overlap::AllowAll);
        s.catchup_window = Duration::from_secs(600);
        // Down from T0 to 3 h later: 181 ticks (00:00 to 03:00) are due.
        let fired = drain(&mut s, &cron, at("2030-01-01T03:00:00Z"), &[]);
        assert_eq!(fired.len(), 11, "{fired:?}");
        assert_eq!(fired[0], "2030-01-01T02:50:00Z");
        assert_eq!(fired[10], "2030-01-01T03:00:00Z");
        assert_eq!(s.missed, 170);
        assert_eq!(s.fired, 11);
        assert_eq!(s.next_fire_at, Some(at("2030-01-01T03:01:00Z")));
    }

    #[test]
    fn skip_counts_the_ticks_that_meet_a_running_execution() {
        let (mut s, cron) = every_minute(Overlap::Skip);
        let running = [ExecutionId::new_unchecked("e")];
        let fired = drain(&mut s, &cron, at("2030-01-01T00:02:00Z"), &running);
        assert!(fired.is_empty());
        assert_eq!(s.skipped, 3);
        assert_eq!(
            drain(&mut s, &cron, at("2030-01-01T00:03:00Z"), &[]).len(),
            1
        );
    }

    #[test]
    fn buffer_one_keeps_one_tick_until_the_running_execution_ends() {
        let (mut s, cron) = every_minute(Overlap::BufferOne);
        let running = [ExecutionId::new_unchecked("e")];
        assert!(drain(&mut s, &cron, at("2030-01-01T00:02:00Z"), &running).is_empty());
        assert_eq!(s.buffered_at, Some(at(T0)));
        assert_eq!(s.skipped, 2);
        // The running execution ends: the buffered tick starts.
        let fired = drain(&mut s, &cron, at("2030-01-01T00:02:30Z"), &[]);
        assert_eq!(fired, ["2030-01-01T00:00:00Z"]);
        assert_eq!(s.buffered_at, None);
    }

    #[test]
    fn cancel_other_starts_at_once_and_names_what_to_cancel() {
        let (s, cron) = every_minute(Overlap::CancelOther);
        let running = [ExecutionId::new_unchecked("e")];
        let p = plan(&s, &cron, at(T0), &running);
        assert_eq!(
            p.action,
            Action::Start {
                scheduled_at: at(T0),
                cancel: running.to_vec()
            }
        );
    }

    #[test]
    fn allow_all_starts_whatever_runs() {
        let (s, cron) = every_minute(Overlap::AllowAll);
        let running = [ExecutionId::new_unchecked("e")];
        assert_eq!(
            started(&plan(&s, &cron, at(T0), &running)).as_deref(),
            Some(T0)
        );
    }

    #[test]
    fn past_end_at_the_schedule_completes() {
        let (mut s, cron) = every_minute(Overlap::AllowAll);
        s.end_at = Some(at("2030-01-01T00:01:30Z"));
        let fired = drain(&mut s, &cron, at("2030-01-01T00:05:00Z"), &[]);
        assert_eq!(fired, ["2030-01-01T00:00:00Z", "2030-01-01T00:01:00Z"]);
        assert_eq!(s.state, ScheduleState::Completed);
        assert_eq!(s.next_fire_at, None);
        assert_eq!(wake_at(&s), None);
    }

    #[test]
    fn a_paused_schedule_plans_nothing_and_is_not_due() {
        let (mut s, cron) = every_minute(Overlap::AllowAll);
        s.state = ScheduleState::Paused;
        let p = plan(&s, &cron, at("2030-01-01T01:00:00Z"), &[]);
        assert_eq!(p.action, Action::Nothing);
        assert!(!p.changed);
        assert_eq!(wake_at(&s), None);
    }

    #[test]
    fn a_long_downtime_is_counted_in_bounded_rounds() {
        let cron = Cron::parse("* * * * * *", "UTC").unwrap();
        let (mut s, _) = every_minute(Overlap::AllowAll);
        s.next_fire_at = Some(at(T0));
        s.catchup_window = Duration::ZERO;
        // A day of per-second ticks: 86,401, counted in rounds of at most
        // MAX_TICKS_PER_PLAN.
        let now = at("2030-01-02T00:00:00Z");
        let p = plan(&s, &cron, now, &[]);
        assert_eq!(p.schedule.missed, MAX_TICKS_PER_PLAN as u64);
        let fired = drain(&mut s, &cron, now, &[]);
        assert_eq!(fired, ["2030-01-02T00:00:00Z"]);
        assert_eq!(s.missed, 86_400);
    }
}

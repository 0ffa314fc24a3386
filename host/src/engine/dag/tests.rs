//! The core's decisions, step by step, at exact instants: no runtime, no
//! store, no clock.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Action, Done, RESUME, Start, State, add};
use crate::engine::definition::Definition;
use crate::model::{
    AttemptReport, Digest, Event, EventKind, Execution, ExecutionId, Metering, Outcome, Status,
    StepError, StepRun, StepStatus, TenantId, Timestamp, WorkflowId,
};

fn t0() -> Timestamp {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

fn at(secs: u64) -> Timestamp {
    add(t0(), Duration::from_secs(secs))
}

/// A definition, an execution of it with `input`, and its `needs`.
fn setup(def: Value, input: Value) -> (Definition, State, Vec<Vec<usize>>) {
    let def = Definition::from_value(def).expect("a valid definition");
    let needs = def.needs();
    let steps = def
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepRun {
            id: s.id.clone(),
            step: s.step.clone().unwrap_or_else(|| "wait".into()),
            digest: s.step.as_ref().map(|_| Digest::of(s.id.as_bytes())),
            needs: needs[i].iter().map(|&j| def.steps[j].id.clone()).collect(),
            status: StepStatus::Pending,
            skipped_reason: None,
            next_attempt_at: None,
            error: None,
            output: None,
            attempts: Vec::new(),
            attempts_before_resume: 0,
            waiting: None,
        })
        .collect();
    let mut exec = Execution {
        execution_id: ExecutionId::new_unchecked("e1"),
        tenant_id: TenantId::new_unchecked("t1"),
        workflow_id: WorkflowId::new_unchecked("wf"),
        workflow_version: 1,
        status: Status::Queued,
        input_data: input,
        output: None,
        error: None,
        custom_data: None,
        created_at: t0(),
        scheduled_for: None,
        schedule_id: None,
        scheduled_at: None,
        batch_id: None,
        started_at: None,
        finished_at: None,
        deadline_at: None,
        duration_ms: None,
        history: Vec::new(),
        steps,
        pending_signals: Vec::new(),
        callback: None,
        deliveries: Vec::new(),
        blocked: None,
        version: 0,
    };
    exec.enter(Status::Queued, t0());
    let mut state = State::new(exec);
    assert!(state.begin(&def, t0()), "a queued execution starts running");
    (def, state, needs)
}

fn run(action: Action) -> (Vec<Start>, bool, Option<Timestamp>) {
    match action {
        Action::Run {
            start,
            changed,
            until,
        } => (start, changed, until),
        other => panic!("expected Run, got {other:?}"),
    }
}

fn ids(state: &State, start: &[Start]) -> Vec<String> {
    start
        .iter()
        .map(|s| state.exec.steps[s.index].id.clone())
        .collect()
}

fn ok(s: &Start, output: Value) -> Done {
    report(
        s,
        Outcome::Succeeded {
            output: output.to_string(),
        },
    )
}

fn report(s: &Start, outcome: Outcome) -> Done {
    Done {
        index: s.index,
        number: s.number,
        started_at: s.started_at,
        input: s.input.clone(),
        result: Ok(AttemptReport {
            outcome,
            metering: Metering::default(),
            logs: Vec::new(),
            http: Vec::new(),
        }),
    }
}

fn error(retryable: bool) -> Outcome {
    Outcome::Failed {
        error: StepError {
            code: "upstream_down".into(),
            message: "down".into(),
            retryable,
        },
    }
}

fn event(seq: u64, kind: EventKind, name: Option<&str>, payload: Option<Value>) -> Event {
    Event {
        seq,
        kind,
        name: name.map(str::to_owned),
        payload,
        at: t0(),
    }
}

fn status_of(state: &State, id: &str) -> StepStatus {
    state.exec.step(id).unwrap().status
}

fn history(state: &State) -> Vec<String> {
    state
        .exec
        .history
        .iter()
        .map(|h| match &h.reason {
            Some(r) => format!("{}({r})", h.status.as_str()),
            None => h.status.as_str().to_owned(),
        })
        .collect()
}

#[test]
fn a_chain_passes_outputs_along_and_finishes_with_the_last() {
    let (def, mut st, needs) = setup(
        json!({"steps": [{"id": "a", "step": "x"}, {"id": "b", "step": "x"}]}),
        json!({"n": 1}),
    );
    let (start, _, until) = run(st.advance(&def, &needs, t0(), 0));
    assert_eq!(ids(&st, &start), ["a"]);
    assert_eq!(start[0].input, json!({"n": 1}));
    assert_eq!(start[0].number, 1);
    assert_eq!(start[0].remaining, Duration::from_secs(3600));
    assert_eq!(until, Some(at(3600)), "the deadline bounds the wait");
    // While `a` runs, nothing else starts.
    let (more, _, _) = run(st.advance(&def, &needs, at(1), 1));
    assert!(more.is_empty());
    st.record(&def, ok(&start[0], json!({"n": 2})), at(1), 0.0);
    let (start, _, _) = run(st.advance(&def, &needs, at(1), 0));
    assert_eq!(ids(&st, &start), ["b"]);
    assert_eq!(
        start[0].input,
        json!({"n": 2}),
        "the previous step's output"
    );
    st.record(&def, ok(&start[0], json!({"n": 3})), at(2), 0.0);
    assert_eq!(
        st.advance(&def, &needs, at(2), 0),
        Action::Finish(Status::Succeeded)
    );
    st.conclude(Some(&def), Status::Succeeded, at(2));
    assert_eq!(st.exec.output, Some(json!({"n": 3})));
    assert_eq!(history(&st), ["queued", "running", "succeeded"]);
}

#[test]
fn independent_steps_start_together_and_a_join_waits_for_both() {
    let (def, mut st, needs) = setup(
        json!({"steps": [
            {"id": "a", "step": "x"},
            {"id": "b", "step": "x", "needs": ["a"]},
            {"id": "c", "step": "x", "needs": ["a"]},
            {"id": "d", "step": "x", "needs": ["b", "c"]}]}),
        json!({}),
    );
    let (start, _, _) = run(st.advance(&def, &needs, t0(), 0));
    st.record(&def, ok(&start[0], json!("a")), t0(), 0.0);
    let (start, _, _) = run(st.advance(&def, &needs, t0(), 0));
    assert_eq!(ids(&st, &start), ["b", "c"]);
    st.record(&def, ok(&start[0], json!("b")), t0(), 0.0);
    let (none, _, _) = run(st.advance(&def, &needs, t0(), 1));
    assert!(none.is_empty(), "d waits for c");
    st.record(&def, ok(&start[1], json!("c")), t0(), 0.0);
    let (start, _, _) = run(st.advance(&def, &needs, t0(), 0));
    assert_eq!(ids(&st, &start), ["d"]);
    assert_eq!(start[0].input, json!({"b": "b", "c": "c"}));
}

#[test]
fn a_retry_parks_until_its_delay_and_then_runs_the_next_attempt() {
    let (def, mut st, needs) = setup(
        json!({"steps": [{"id": "a", "step": "x",
            "retry": {"max_attempts": 2, "initial_delay": "10s"}}]}),
        json!({}),
    );
    let (start, _, _) = run(st.advance(&def, &needs, t0(), 0));
    st.record(&def, report(&start[0], error(true)), at(1), 0.0);
    assert_eq!(status_of(&st, "a"), StepStatus::Retrying);
    assert_eq!(
        st.advance(&def, &needs, at(1), 0),
        Action::Park { wake_at: at(11) }
    );
    // Woken early (an event): still nothing to start.
    assert_eq!(
        st.advance(&def, &needs, at(5), 0),
        Action::Park { wake_at: at(11) }
    );
    let (start, _, _) = run(st.advance(&def, &needs, at(11), 0));
    assert_eq!(start[0].number, 2);
    st.record(&def, report(&start[0], error(true)), at(12), 0.0);
    assert_eq!(
        st.advance(&def, &needs, at(12), 0),
        Action::Finish(Status::Failed),
        "the budget is spent"
    );
    assert_eq!(st.exec.error.as_ref().unwrap().code, "upstream_down");
}

#[test]
fn a_failure_stops_the_rest_and_waits_for_running_attempts() {
    let (def, mut st, needs) = setup(
        json!({"steps": [
            {"id": "a", "step": "x", "needs": []},
            {"id": "b", "step": "x", "needs": []},
            {"id": "c", "step": "x", "needs": ["a", "b"]}]}),
        json!({}),
    );
    let (start, _, _) = run(st.advance(&def, &needs, t0(), 0));
    assert_eq!(ids(&st, &start), ["a", "b"]);
    st.record(&def, report(&start[0], error(false)), at(1), 0.0);
    assert!(st.stop.is_some(), "fail fast");
    // `b` is still running: no timer, wait for it to report.
    let (none, _, until) = run(st.advance(&def, &needs, at(1), 1));
    assert!(none.is_empty());
    assert_eq!(until, None);
    st.record(&def, report(&start[1], Outcome::Cancelled), at(1), 0.0);
    assert_eq!(
        st.advance(&def, &needs, at(1), 0),
        Action::Finish(Status::Failed)
    );
    st.conclude(Some(&def), Status::Failed, at(1));
    assert_eq!(status_of(&st, "b"), StepStatus::Cancelled);
    assert_eq!(status_of(&st, "c"), StepStatus::Cancelled);
}

#[test]
fn false_conditions_and_failed_needs_skip_and_the_rest_finishes() {
    let (def, mut st, needs) = setup(
        json!({"steps": [
            {"id": "a", "step": "x", "continue_on_error": true},
            {"id": "b", "step": "x", "needs": ["a"]},
            {"id": "c", "step": "x", "needs": [], "if": "input.go"}]}),
        json!({"go": false}),
    );
    let (start, changed, _) = run(st.advance(&def, &needs, t0(), 0));
    assert_eq!(ids(&st, &start), ["a"]);
    assert!(changed, "the skip of c is stored");
    assert_eq!(status_of(&st, "c"), StepStatus::Skipped);
    st.record(&def, report(&start[0], error(false)), at(1), 0.0);
    assert_eq!(
        st.advance(&def, &needs, at(1), 0),
        Action::Finish(Status::PartiallySucceeded)
    );
    assert_eq!(
        st.exec.step("b").unwrap().skipped_reason.as_deref(),
        Some("it needs `a`, which failed")
    );
}

#[test]
fn the_deadline_times_out_running_attempts() {
    let (def, mut st, needs) = setup(
        json!({"timeout": "1m", "steps": [{"id": "a", "step": "x"}]}),
        json!({}),
    );
    let (start, _, until) = run(st.advance(&def, &needs, t0(), 0));
    assert_eq!(until, Some(at(60)));
    let (_, _, until) = run(st.advance(&def, &needs, at(60), 1));
    assert_eq!(until, None, "stopping: wait for the attempt");
    st.record(&def, report(&start[0], Outcome::Cancelled), at(60), 0.0);
    assert_eq!(
        st.advance(&def, &needs, at(60), 0),
        Action::Finish(Status::TimedOut)
    );
    let a = st.exec.step("a").unwrap();
    assert_eq!(a.attempts[0].outcome, "timed_out");
    assert_eq!(st.exec.error.as_ref().unwrap().code, "timed_out");
}

#[test]
fn a_wait_parks_until_its_time_and_a_signal_sent_early_is_taken() {
    let (def, mut st, needs) = setup(
        json!({"timeout": "2h", "steps": [
            {"id": "nap", "wait": {"for": "1h"}},
            {"id": "gate", "wait": {"signal": "go", "timeout": "10m"}},
            {"id": "after", "step": "x", "input": "{{ steps.gate.output }}"}]}),
        json!({}),
    );
    // A signal before its step waits is kept.
    st.apply(
        event(1, EventKind::Signal, Some("go"), Some(json!({"ok": 1}))),
        t0(),
    );
    assert_eq!(
        st.advance(&def, &needs, t0(), 0),
        Action::Park { wake_at: at(3600) }
    );
    assert_eq!(st.exec.status, Status::Waiting);
    assert_eq!(st.exec.pending_signals.len(), 1);
    let (start, _, _) = run(st.advance(&def, &needs, at(3600), 0));
    assert_eq!(
        st.exec.step("nap").unwrap().output,
        Some(json!({"waited_ms": 3_600_000}))
    );
    assert_eq!(status_of(&st, "gate"), StepStatus::Succeeded);
    assert!(st.exec.pending_signals.is_empty(), "taken once");
    assert_eq!(ids(&st, &start), ["after"]);
    assert_eq!(start[0].input, json!({"ok": 1}));
    assert_eq!(st.exec.status, Status::Running);
}

#[test]
fn a_signal_timeout_fails_the_step() {
    let (def, mut st, needs) = setup(
        json!({"steps": [{"id": "gate", "wait": {"signal": "go", "timeout": "10m"}}]}),
        json!({}),
    );
    assert_eq!(
        st.advance(&def, &needs, t0(), 0),
        Action::Park { wake_at: at(600) }
    );
    assert_eq!(
        st.advance(&def, &needs, at(600), 0),
        Action::Finish(Status::Failed)
    );
    assert_eq!(st.exec.error.as_ref().unwrap().code, "signal_timeout");
}

#[test]
fn a_pause_starts_nothing_and_parks_at_the_deadline_until_resumed() {
    let (def, mut st, needs) = setup(
        json!({"steps": [{"id": "a", "step": "x"}, {"id": "b", "step": "x"}]}),
        json!({}),
    );
    let (start, _, _) = run(st.advance(&def, &needs, t0(), 0));
    st.apply(event(1, EventKind::Pause, None, None), at(1));
    assert_eq!(st.exec.status, Status::Paused, "paused at once");
    let (none, _, until) = run(st.advance(&def, &needs, at(1), 1));
    assert!(none.is_empty());
    assert_eq!(until, Some(at(3600)), "only the deadline wakes it");
    st.record(&def, ok(&start[0], json!(1)), at(2), 0.0);
    assert_eq!(
        st.advance(&def, &needs, at(2), 0),
        Action::Park { wake_at: at(3600) },
        "b does not start"
    );
    assert_eq!(status_of(&st, "b"), StepStatus::Pending);
    st.apply(event(2, EventKind::Resume, None, None), at(5));
    let (start, _, _) = run(st.advance(&def, &needs, at(5), 0));
    assert_eq!(ids(&st, &start), ["b"]);
    assert_eq!(
        history(&st),
        ["queued", "running", "paused", "running(resume)"]
    );
    // Paused with nothing left, it finishes.
    st.apply(event(3, EventKind::Pause, None, None), at(6));
    st.record(&def, ok(&start[0], json!(2)), at(7), 0.0);
    assert_eq!(
        st.advance(&def, &needs, at(7), 0),
        Action::Finish(Status::Succeeded)
    );
}

#[test]
fn resume_ends_time_waits_but_not_signal_waits() {
    let (def, mut st, needs) = setup(
        json!({"steps": [
            {"id": "nap", "wait": {"until": "2031-01-01T00:00:00Z"}, "needs": []},
            {"id": "gate", "wait": {"signal": "go"}, "needs": []}]}),
        json!({}),
    );
    assert_eq!(
        st.advance(&def, &needs, t0(), 0),
        Action::Park { wake_at: at(3600) },
        "the deadline comes first"
    );
    st.apply(event(1, EventKind::Resume, None, None), at(30));
    assert_eq!(
        st.advance(&def, &needs, at(30), 0),
        Action::Park { wake_at: at(3600) }
    );
    assert_eq!(
        st.exec.step("nap").unwrap().output,
        Some(json!({"waited_ms": 30_000}))
    );
    assert_eq!(status_of(&st, "gate"), StepStatus::Waiting);
    // A second resume has no time wait to end: nothing happens.
    let before = st.exec.history.len();
    st.apply(event(2, EventKind::Resume, None, None), at(40));
    assert_eq!(st.exec.history.len(), before);
    // Paused, it still reaches its deadline.
    st.apply(event(3, EventKind::Pause, None, None), at(50));
    assert_eq!(
        st.advance(&def, &needs, at(3600), 0),
        Action::Finish(Status::TimedOut)
    );
}

#[test]
fn resume_restarts_a_failed_execution_with_a_fresh_budget() {
    let (def, mut st, needs) = setup(
        json!({"steps": [
            {"id": "a", "step": "x"},
            {"id": "b", "step": "x", "retry": {"max_attempts": 2, "initial_delay": "1s"}},
            {"id": "c", "step": "x"}]}),
        json!({}),
    );
    let (start, _, _) = run(st.advance(&def, &needs, t0(), 0));
    st.record(&def, ok(&start[0], json!("a")), t0(), 0.0);
    let (start, _, _) = run(st.advance(&def, &needs, t0(), 0));
    st.record(&def, report(&start[0], error(true)), t0(), 0.0);
    let (start, _, _) = run(st.advance(&def, &needs, at(1), 0));
    st.record(&def, report(&start[0], error(true)), at(1), 0.0);
    assert_eq!(
        st.advance(&def, &needs, at(1), 0),
        Action::Finish(Status::Failed)
    );
    st.conclude(Some(&def), Status::Failed, at(1));
    assert!(st.exec.finished_at.is_some());

    // The driver of the reopened execution starts afresh.
    let mut st = State::new(st.exec);
    st.apply(event(1, EventKind::Resume, None, None), at(100));
    assert_eq!(st.exec.status, Status::Running);
    assert_eq!(
        st.exec.history.last().unwrap().reason.as_deref(),
        Some(RESUME)
    );
    assert!(st.exec.error.is_none() && st.exec.finished_at.is_none());
    assert!(!st.begin(&def, at(100)));
    assert_eq!(st.exec.deadline_at, Some(at(3700)), "a fresh deadline");
    let (start, _, _) = run(st.advance(&def, &needs, at(100), 0));
    assert_eq!(ids(&st, &start), ["b"], "a succeeded step is not run again");
    assert_eq!(start[0].number, 3);
    assert_eq!(start[0].input, json!("a"));
    st.record(&def, report(&start[0], error(true)), at(100), 0.0);
    assert_eq!(status_of(&st, "b"), StepStatus::Retrying, "a fresh budget");
    let (start, _, _) = run(st.advance(&def, &needs, at(101), 0));
    st.record(&def, ok(&start[0], json!("b")), at(101), 0.0);
    let (start, _, _) = run(st.advance(&def, &needs, at(101), 0));
    st.record(&def, ok(&start[0], json!("c")), at(101), 0.0);
    assert_eq!(
        st.advance(&def, &needs, at(101), 0),
        Action::Finish(Status::Succeeded)
    );
    assert_eq!(st.exec.step("a").unwrap().attempts.len(), 1);
}

#[test]
fn a_cancel_stops_a_waiting_execution_at_once() {
    let (def, mut st, needs) = setup(
        json!({"steps": [{"id": "gate", "wait": {"signal": "go"}}]}),
        json!({}),
    );
    assert!(matches!(
        st.advance(&def, &needs, t0(), 0),
        Action::Park { .. }
    ));
    st.apply(event(1, EventKind::Cancel, None, None), at(1));
    assert_eq!(
        st.advance(&def, &needs, at(1), 0),
        Action::Finish(Status::Cancelled)
    );
    // A resume after the cancel in the same batch changes nothing.
    st.apply(event(2, EventKind::Resume, None, None), at(1));
    st.conclude(Some(&def), Status::Cancelled, at(1));
    assert_eq!(status_of(&st, "gate"), StepStatus::Cancelled);
    assert_eq!(history(&st), ["queued", "running", "waiting", "cancelled"]);
}

#[test]
fn a_template_failure_fails_the_step_before_an_attempt() {
    let (def, mut st, needs) = setup(
        json!({"steps": [{"id": "a", "step": "x", "input": "{{ input.missing.deep }}"}]}),
        json!({}),
    );
    assert_eq!(
        st.advance(&def, &needs, t0(), 0),
        Action::Finish(Status::Failed)
    );
    let a = st.exec.step("a").unwrap();
    assert!(a.attempts.is_empty());
    assert_eq!(a.error.as_ref().unwrap().code, "template_error");
}

#[test]
fn a_step_whose_component_is_unavailable_fails_without_a_retry() {
    let (def, mut st, needs) = setup(
        json!({"steps": [{"id": "a", "step": "x", "retry": {"max_attempts": 3}}]}),
        json!({}),
    );
    let (start, _, _) = run(st.advance(&def, &needs, t0(), 0));
    let done = Done {
        index: start[0].index,
        number: start[0].number,
        started_at: start[0].started_at,
        input: start[0].input.clone(),
        result: Err(crate::engine::RunnerError(
            "component sha256:00 is missing".into(),
        )),
    };
    st.record(&def, done, at(1), 0.0);
    assert_eq!(status_of(&st, "a"), StepStatus::Failed);
    let error = st.exec.step("a").unwrap().error.clone().unwrap();
    assert_eq!(error.code, "step_unavailable");
    assert!(error.message.contains("is missing"), "{error:?}");
    // A step that cannot run is not retried: the execution fails now.
    assert_eq!(
        st.advance(&def, &needs, at(1), 0),
        Action::Finish(Status::Failed)
    );
}

#[test]
fn needs_that_can_never_be_met_fail_the_execution_as_stuck() {
    let (def, mut st, _) = setup(
        json!({"steps": [{"id": "a", "step": "x"}, {"id": "b", "step": "x"}]}),
        json!({}),
    );
    // `validate` refuses cycles; the core must still fail rather than hang
    // if one reached it.
    let cycle = vec![vec![1], vec![0]];
    assert_eq!(
        st.advance(&def, &cycle, t0(), 0),
        Action::Finish(Status::Failed)
    );
    let error = st.exec.error.clone().unwrap();
    assert_eq!(error.code, "stuck");
    assert!(error.message.contains("`needs` cannot be met"), "{error:?}");
}

#[test]
fn secrets_that_cannot_be_opened_fail_the_execution_before_any_step() {
    let (def, mut st, needs) = setup(json!({"steps": [{"id": "a", "step": "x"}]}), json!({}));
    st.fail_to_start("secrets_unavailable", "the vault cannot open `key`".into());
    assert_eq!(
        st.advance(&def, &needs, t0(), 0),
        Action::Finish(Status::Failed)
    );
    st.conclude(Some(&def), Status::Failed, t0());
    assert_eq!(st.exec.error.as_ref().unwrap().code, "secrets_unavailable");
    assert!(st.exec.steps[0].attempts.is_empty(), "no attempt ran");
}

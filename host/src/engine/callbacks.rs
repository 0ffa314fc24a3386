//! Which callbacks a committed state reports, and their bodies: the pure
//! part of callbacks. The persister compares the state it last committed
//! with the one it commits now and stores a delivery per event in the same
//! commit (the outbox); `deliver` sends them.
//!
//! Commits coalesce (a run of fast steps shares one), so events are read
//! off the difference of two states, not off the transitions between them:
//! an execution that started and finished within one commit reports both.

use serde_json::{Map, Value, json};

use crate::model::{EventType, Execution, NewDelivery, Status, StepRun, Timestamp};

/// The default bound on an output carried in a callback body
/// (`callback-max-output-bytes`).
pub const MAX_OUTPUT_BYTES: usize = 256 << 10;

/// One event between two states: its type and, for `step.finished`, the
/// step's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Happened {
    /// What happened.
    pub event: EventType,
    /// For `step.finished`: which step.
    pub step: Option<usize>,
}

/// The events from `before` to `after`, in the order a run reports them:
/// started, the steps that settled (in workflow order), waiting, finished.
pub fn events(before: &Execution, after: &Execution) -> Vec<Happened> {
    let mut out = Vec::new();
    let happened = |event, step| Happened { event, step };
    if before.started_at.is_none() && after.started_at.is_some() {
        out.push(happened(EventType::ExecutionStarted, None));
    }
    for (i, step) in after.steps.iter().enumerate() {
        let was = before.steps.get(i);
        // Settled now, and not before with the same attempts (a resume
        // that runs a step again makes it settle anew).
        let settled_before = was.is_some_and(|w| {
            w.status.is_settled()
                && w.status == step.status
                && w.attempts.len() == step.attempts.len()
        });
        if step.status.is_settled() && !settled_before {
            out.push(happened(EventType::StepFinished, Some(i)));
        }
    }
    if after.status == Status::Waiting && before.status != Status::Waiting {
        out.push(happened(EventType::ExecutionWaiting, None));
    }
    let finished_before = before.status.is_terminal() && before.finished_at == after.finished_at;
    if after.status.is_terminal() && !finished_before {
        out.push(happened(EventType::ExecutionFinished, None));
    }
    out
}

/// The deliveries to store with the commit of `after`: one per event its
/// callback asks for. `max_output` bounds each output carried.
pub fn deliveries(
    before: &Execution,
    after: &Execution,
    at: Timestamp,
    first_delay: std::time::Duration,
    max_output: usize,
) -> Vec<NewDelivery> {
    let Some(callback) = &after.callback else {
        return Vec::new();
    };
    events(before, after)
        .into_iter()
        .filter(|h| callback.wants(h.event))
        .map(|h| {
            let step = h.step.and_then(|i| after.steps.get(i));
            NewDelivery {
                delivery_id: NewDelivery::generate_id(),
                execution_id: after.execution_id.clone(),
                tenant_id: after.tenant_id.clone(),
                event: h.event,
                step: step.map(|s| s.id.clone()),
                url: callback.url.clone(),
                body: body(after, h.event, step, at, max_output).to_string(),
                created_at: at,
                due_at: super::dag::add(at, first_delay),
            }
        })
        .collect()
}

/// The JSON body of a callback: `{type, timestamp, data, custom_data}`.
/// `data` holds the execution's ids and status, its output or error once
/// it finished, and for `step.finished` the step (`{id, status, output?,
/// error?}`). The execution's `custom_data` is copied as it was given.
pub fn body(
    exec: &Execution,
    event: EventType,
    step: Option<&StepRun>,
    at: Timestamp,
    max_output: usize,
) -> Value {
    let mut data = Map::new();
    data.insert("execution_id".into(), json!(exec.execution_id));
    data.insert("workflow_id".into(), json!(exec.workflow_id));
    data.insert("workflow_version".into(), json!(exec.workflow_version));
    data.insert("status".into(), json!(exec.status));
    if event == EventType::ExecutionFinished {
        if let Some(output) = &exec.output {
            put_output(&mut data, output, exec, max_output);
        }
        if let Some(error) = &exec.error {
            data.insert("error".into(), json!(error));
        }
    }
    if let Some(step) = step {
        let mut s = Map::new();
        s.insert("id".into(), json!(step.id));
        s.insert("status".into(), json!(step.status));
        if let Some(output) = &step.output {
            put_output(&mut s, output, exec, max_output);
        }
        if let Some(error) = &step.error {
            s.insert("error".into(), json!(error));
        }
        data.insert("step".into(), Value::Object(s));
    }
    let mut body = Map::new();
    body.insert("type".into(), json!(event.as_str()));
    body.insert("timestamp".into(), json!(at));
    body.insert("data".into(), Value::Object(data));
    if let Some(custom) = &exec.custom_data {
        body.insert("custom_data".into(), custom.clone());
    }
    Value::Object(body)
}

/// Puts `output` into `into`, or, when its JSON is over `max` bytes, a
/// link to the execution that holds it (`output_url`) and
/// `output_truncated: true`.
fn put_output(into: &mut Map<String, Value>, output: &Value, exec: &Execution, max: usize) {
    if output.to_string().len() <= max {
        into.insert("output".into(), output.clone());
    } else {
        into.insert(
            "output_url".into(),
            json!(format!("/v1/executions/{}", exec.execution_id)),
        );
        into.insert("output_truncated".into(), json!(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Callback, StepStatus};

    fn exec() -> Execution {
        let text = json!({
            "execution_id": "0190-e", "workflow_id": "wf", "workflow_version": 2,
            "status": "queued", "input_data": {}, "output": null, "error": null,
            "custom_data": {"order": 7, "tags": ["a"]}, "created_at": "2026-01-01T00:00:00Z",
            "started_at": null, "finished_at": null, "duration_ms": null, "history": [],
            "steps": [
                {"id": "a", "step": "echo", "status": "pending", "output": null, "attempts": []},
                {"id": "b", "step": "echo", "status": "pending", "output": null, "attempts": []}
            ],
            "callback": {"url": "https://example.com/hook",
                         "events": ["execution.started", "step.finished", "execution.waiting",
                                    "execution.finished"]}
        });
        serde_json::from_value(text).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn kinds(before: &Execution, after: &Execution) -> Vec<(EventType, Option<usize>)> {
        events(before, after)
            .into_iter()
            .map(|h| (h.event, h.step))
            .collect()
    }

    #[test]
    fn a_run_reports_start_each_step_and_its_end_in_order() {
        let queued = exec();
        let mut running = queued.clone();
        running.enter(Status::Running, at("2026-01-01T00:00:01Z"));
        assert_eq!(
            kinds(&queued, &running),
            [(EventType::ExecutionStarted, None)]
        );
        let mut one = running.clone();
        one.steps[0].status = StepStatus::Succeeded;
        one.steps[0].output = Some(json!({"x": 1}));
        assert_eq!(kinds(&running, &one), [(EventType::StepFinished, Some(0))]);
        assert_eq!(kinds(&one, &one), []);
        let mut done = one.clone();
        done.steps[1].status = StepStatus::Succeeded;
        done.output = Some(json!("out"));
        done.enter(Status::Succeeded, at("2026-01-01T00:00:02Z"));
        assert_eq!(
            kinds(&one, &done),
            [
                (EventType::StepFinished, Some(1)),
                (EventType::ExecutionFinished, None)
            ]
        );
        // One commit covering the whole run reports all of it.
        assert_eq!(
            kinds(&queued, &done),
            [
                (EventType::ExecutionStarted, None),
                (EventType::StepFinished, Some(0)),
                (EventType::StepFinished, Some(1)),
                (EventType::ExecutionFinished, None)
            ]
        );
        assert_eq!(
            kinds(&done, &done),
            [],
            "committing the end again reports nothing"
        );
    }

    #[test]
    fn waiting_and_finishing_again_after_a_resume_are_reported() {
        let mut running = exec();
        running.enter(Status::Running, at("2026-01-01T00:00:01Z"));
        let mut waiting = running.clone();
        waiting.status = Status::Waiting;
        assert_eq!(
            kinds(&running, &waiting),
            [(EventType::ExecutionWaiting, None)]
        );
        let mut failed = running.clone();
        failed.steps[0].status = StepStatus::Failed;
        failed.steps[0].attempts = vec![attempt(1)];
        failed.enter(Status::Failed, at("2026-01-01T00:00:02Z"));
        let mut resumed = failed.clone();
        resumed.steps[0].status = StepStatus::Running;
        resumed.status = Status::Running;
        resumed.finished_at = None;
        assert_eq!(kinds(&failed, &resumed), []);
        let mut again = resumed.clone();
        again.steps[0].status = StepStatus::Failed;
        again.enter(Status::Failed, at("2026-01-01T00:00:05Z"));
        assert_eq!(
            kinds(&resumed, &again),
            [
                (EventType::StepFinished, Some(0)),
                (EventType::ExecutionFinished, None)
            ]
        );
        // Resumed, run again and failed again within one commit: the step
        // has one more attempt, and the end is a new one.
        let mut coalesced = failed.clone();
        coalesced.steps[0].attempts.push(attempt(2));
        coalesced.enter(Status::Failed, at("2026-01-01T00:00:09Z"));
        assert_eq!(
            kinds(&failed, &coalesced),
            [
                (EventType::StepFinished, Some(0)),
                (EventType::ExecutionFinished, None)
            ]
        );
    }

    fn attempt(number: u32) -> crate::model::Attempt {
        crate::model::Attempt {
            number,
            status: StepStatus::Failed,
            outcome: "failed".into(),
            started_at: at("2026-01-01T00:00:01Z"),
            finished_at: at("2026-01-01T00:00:02Z"),
            duration_ms: 1.0,
            fuel_consumed: 1,
            memory_peak_bytes: 1,
            error: None,
            logs: Vec::new(),
            http_requests: Vec::new(),
            input: None,
        }
    }

    #[test]
    fn only_the_events_asked_for_are_stored_with_custom_data_at_the_root() {
        let queued = exec();
        let mut done = queued.clone();
        done.steps[0].status = StepStatus::Succeeded;
        done.steps[1].status = StepStatus::Succeeded;
        done.output = Some(json!({"total": 3}));
        done.enter(Status::Succeeded, at("2026-01-01T00:00:02Z"));
        done.callback = Some(Callback {
            url: "https://example.com/hook".into(),
            events: vec![EventType::ExecutionFinished],
        });
        let now = at("2026-01-01T00:00:03Z");
        let out = deliveries(
            &queued,
            &done,
            now,
            std::time::Duration::ZERO,
            MAX_OUTPUT_BYTES,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].event, EventType::ExecutionFinished);
        let body: Value = serde_json::from_str(&out[0].body).unwrap();
        assert_eq!(
            body,
            json!({"type": "execution.finished", "timestamp": "2026-01-01T00:00:03Z",
                   "data": {"execution_id": "0190-e", "workflow_id": "wf",
                            "workflow_version": 2, "status": "succeeded",
                            "output": {"total": 3}},
                   "custom_data": {"order": 7, "tags": ["a"]}})
        );
        done.callback = None;
        assert!(
            deliveries(
                &queued,
                &done,
                now,
                std::time::Duration::ZERO,
                MAX_OUTPUT_BYTES
            )
            .is_empty()
        );
    }

    #[test]
    fn a_large_output_is_replaced_by_a_link() {
        let mut done = exec();
        done.output = Some(json!("x".repeat(100)));
        done.enter(Status::Succeeded, at("2026-01-01T00:00:02Z"));
        let b = body(
            &done,
            EventType::ExecutionFinished,
            None,
            at("2026-01-01T00:00:02Z"),
            50,
        );
        assert_eq!(b["data"]["output_url"], "/v1/executions/0190-e");
        assert_eq!(b["data"]["output_truncated"], true);
        assert!(b["data"].get("output").is_none());
        let step = &done.steps[0];
        let b = body(
            &done,
            EventType::StepFinished,
            Some(step),
            at("2026-01-01T00:00:02Z"),
            50,
        );
        assert_eq!(b["data"]["step"]["id"], "a");
        assert_eq!(b["data"]["step"]["status"], "pending");
    }
}

//! The dispatcher and the per-execution driver.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Inner, Phase, now};
use crate::model::{Execution, ExecutionError, Outcome, Status, StepStatus, attempt_from};

/// Takes executions off the FIFO queue and drives each in its own task,
/// with at most `max_in_flight` at once.
pub(super) async fn dispatch(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Execution>) {
    while let Some(exec) = rx.recv().await {
        let Ok(permit) = inner.in_flight.clone().acquire_owned().await else {
            return;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            drive(&inner, exec).await;
            drop(permit);
        });
    }
}

/// Persists `exec`, retrying until the store takes it: a state the store
/// has not committed is never published.
pub(super) async fn persist(inner: &Inner, exec: &Execution) {
    let mut delay = Duration::from_millis(50);
    loop {
        match inner.store.save_execution(exec).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(execution = %exec.execution_id, error = %e, "persisting an execution failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn drive(inner: &Inner, mut exec: Execution) {
    let id = exec.execution_id.clone();
    let live = inner
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned();
    let Some(live) = live else { return };
    {
        let mut phase = live.phase.lock().unwrap_or_else(|e| e.into_inner());
        if *phase == Phase::CancelledWhileQueued {
            return;
        }
        *phase = Phase::Started;
    }
    let publish = |exec: &Execution| {
        live.tx.send_replace(Arc::new(exec.clone()));
    };

    exec.enter(Status::Running, now());
    persist(inner, &exec).await;
    publish(&exec);

    // A resumed execution keeps the outputs of the steps that completed
    // before the restart; only the others run (again).
    let mut input = exec.input_data.clone();
    let mut final_status = Status::Succeeded;
    for i in 0..exec.steps.len() {
        if exec.steps[i].status == StepStatus::Succeeded {
            input = exec.steps[i]
                .output
                .clone()
                .unwrap_or(serde_json::Value::Null);
            continue;
        }
        if live.cancel.is_cancelled() {
            final_status = Status::Cancelled;
            break;
        }
        let step_input = exec.steps[i].input.clone().unwrap_or_else(|| input.clone());
        let number = exec.steps[i].attempts.len() as u32 + 1;
        exec.steps[i].status = StepStatus::Running;
        let started_at = now();
        let report = {
            let _permit = inner.attempts.acquire().await;
            inner
                .runner
                .run(
                    &exec.tenant_id,
                    &exec.steps[i].digest,
                    &step_input.to_string(),
                    &live.cancel,
                )
                .await
        };
        let step_id = exec.steps[i].id.clone();
        let step = &mut exec.steps[i];
        match report {
            Err(e) => {
                step.status = StepStatus::Failed;
                exec.error = Some(ExecutionError {
                    step_name: Some(step_id),
                    message: e.0,
                    code: "step_unavailable".into(),
                });
                final_status = Status::Failed;
            }
            Ok(report) => {
                let attempt = attempt_from(
                    number,
                    &step_id,
                    started_at,
                    now(),
                    &report.outcome,
                    &report.metering,
                    report.logs,
                );
                let error = attempt.error.clone();
                step.attempts.push(attempt);
                match report.outcome {
                    Outcome::Succeeded { output } => match serde_json::from_str(&output) {
                        Ok(value) => {
                            step.status = StepStatus::Succeeded;
                            step.output = Some(value);
                            input = step.output.clone().unwrap_or(serde_json::Value::Null);
                        }
                        Err(e) => {
                            step.status = StepStatus::Failed;
                            exec.error = Some(ExecutionError {
                                step_name: Some(step_id),
                                message: format!("the step's output could not be read: {e}"),
                                code: "invalid_output".into(),
                            });
                            final_status = Status::Failed;
                        }
                    },
                    Outcome::Cancelled => {
                        step.status = StepStatus::Cancelled;
                        final_status = Status::Cancelled;
                    }
                    _ => {
                        step.status = StepStatus::Failed;
                        exec.error = error;
                        final_status = Status::Failed;
                    }
                }
            }
        }
        if final_status != Status::Succeeded {
            break;
        }
        // The step's result is persisted before the next step starts, so a
        // completed step never runs again after a crash.
        if i + 1 < exec.steps.len() {
            persist(inner, &exec).await;
            publish(&exec);
        }
    }
    if final_status == Status::Cancelled {
        for s in &mut exec.steps {
            if matches!(s.status, StepStatus::Pending | StepStatus::Running) {
                s.status = StepStatus::Cancelled;
            }
        }
    }
    if final_status == Status::Succeeded {
        exec.output = exec.steps.last().and_then(|s| s.output.clone());
    }
    exec.enter(final_status, now());
    persist(inner, &exec).await;
    publish(&exec);
    inner
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

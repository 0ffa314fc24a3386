//! One attempt: a fresh store and instance, the call under every limit, the
//! classification of how it ended, and the metering.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline, WasmBacktrace};

use super::engine::EPOCH_TICK;
use super::http::Access;
use super::limits::MemoryMeter;
use super::logs::AttemptLog;
use super::state::State;
use super::{Capabilities, Error, Limits, Prepared, Sandbox};
use crate::model::Redactor;
use crate::model::{AttemptReport, Metering, Outcome, StepError};

/// A handle that interrupts a running attempt from outside; cancelling it
/// ends the attempt with [`Outcome::Cancelled`] within one epoch tick,
/// whether the guest computes or waits.
pub type Cancel = tokio_util::sync::CancellationToken;

/// Why the epoch callback stopped the guest.
const RUNNING: u8 = 0;
const STOPPED_TIMEOUT: u8 = 1;
const STOPPED_CANCEL: u8 = 2;

/// Largest trap message kept, including the guest's stderr tail.
const MAX_TRAP_MESSAGE: usize = 2048;

impl Sandbox {
    /// Runs one attempt of `step` with `input` under `limits`.
    ///
    /// Every call gets a fresh `Store` and instance; nothing survives
    /// between attempts. The returned report carries the outcome, whatever
    /// the guest did; `Err` means the caller or the host failed (input over
    /// the limit, no free instance slot).
    pub async fn run(
        &self,
        step: &Prepared,
        input: &str,
        limits: &Limits,
        caps: &Capabilities,
        cancel: &Cancel,
    ) -> Result<AttemptReport, Error> {
        let input_size = input.len() as u64;
        if input_size > limits.max_input_bytes {
            return Err(Error::InputTooLarge {
                size: input_size,
                limit: limits.max_input_bytes,
            });
        }
        let started = Instant::now();
        let redactor = Redactor::new(caps.secrets.iter().cloned());
        let log = AttemptLog::new(limits.max_log_bytes, redactor.clone());
        let meter = MemoryMeter::new(limits.memory_bytes, 200_000);
        let access = match (&self.settings.outbound, &caps.http) {
            (Some(outbound), Some(grant)) => Some(Access {
                outbound: outbound.clone(),
                grant: grant.clone(),
            }),
            _ => None,
        };
        let mut store = Store::new(
            &self.engine,
            State::new(log.clone(), caps.config.clone(), meter, access),
        );
        let traffic = store.data().http_hooks.traffic();
        store.limiter(|s| &mut s.meter);
        store.set_fuel(limits.fuel).map_err(Error::Internal)?;

        // The epoch callback runs once a tick while the guest computes: it
        // stops the guest at the deadline or on cancel, and otherwise yields
        // so that other attempts and the cancel/timeout futures below run.
        let deadline = started + limits.timeout;
        let stopped = Arc::new(AtomicU8::new(RUNNING));
        {
            let stopped = stopped.clone();
            let cancel = cancel.clone();
            store.epoch_deadline_callback(move |_| {
                let why = if cancel.is_cancelled() {
                    STOPPED_CANCEL
                } else if Instant::now() >= deadline {
                    STOPPED_TIMEOUT
                } else {
                    return Ok(UpdateDeadline::Yield(1));
                };
                stopped.store(why, Ordering::Relaxed);
                Err(Trap::Interrupt.into())
            });
        }
        store.set_epoch_deadline(1);

        // The timer and the cancel branch cover a guest that waits inside a
        // host call (a sleep, a poll), where the epoch callback never runs.
        let result = tokio::select! {
            r = call(step, &mut store, input) => Some(r),
            () = tokio::time::sleep_until((deadline + EPOCH_TICK).into()) => {
                stopped.store(STOPPED_TIMEOUT, Ordering::Relaxed);
                None
            }
            () = cancel.cancelled() => {
                stopped.store(STOPPED_CANCEL, Ordering::Relaxed);
                None
            }
        };

        let fuel_left = store.get_fuel().unwrap_or(0);
        let state = store.data();
        let memory_peak_bytes = state.meter.peak as u64;
        let memory_denied = state.meter.denied;
        let outcome = match result {
            Some(Ok(Ok(output))) => check_output(output, limits),
            Some(Ok(Err(e))) => Outcome::Failed {
                error: StepError {
                    code: redactor.redact(&e.code),
                    message: redactor.redact(&e.message),
                    retryable: e.retryable,
                },
            },
            Some(Err(e)) => {
                if let Some(limit) = e.downcast_ref::<PoolConcurrencyLimitError>() {
                    return Err(Error::AtCapacity(wasmtime::format_err!("{limit}")));
                }
                classify(
                    &e,
                    stopped.load(Ordering::Relaxed),
                    memory_denied,
                    &log,
                    &redactor,
                )
            }
            None => stopped_outcome(stopped.load(Ordering::Relaxed)),
        };
        drop(store);
        Ok(AttemptReport {
            outcome,
            metering: Metering {
                wall_time_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                fuel_consumed: limits.fuel.saturating_sub(fuel_left),
                memory_peak_bytes,
            },
            logs: log.finish(),
            http: traffic.records(),
        })
    }
}

async fn call(
    step: &Prepared,
    store: &mut Store<State>,
    input: &str,
) -> wasmtime::Result<Result<String, super::bindings::StepError>> {
    let instance = step.pre.instantiate_async(&mut *store).await?;
    instance.call_run(&mut *store, input).await
}

fn stopped_outcome(stopped: u8) -> Outcome {
    if stopped == STOPPED_CANCEL {
        Outcome::Cancelled
    } else {
        Outcome::TimedOut
    }
}

fn check_output(output: String, limits: &Limits) -> Outcome {
    let size = output.len() as u64;
    if size > limits.max_output_bytes {
        return Outcome::InvalidOutput {
            reason: format!(
                "the output is {size} bytes, over the limit of {} bytes",
                limits.max_output_bytes
            ),
        };
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(&output) {
        Ok(_) => Outcome::Succeeded { output },
        Err(e) => Outcome::InvalidOutput {
            reason: format!("the output is not JSON: {e}"),
        },
    }
}

/// What a trapped JavaScript step is told when componentize-js's export
/// glue lost the value it threw.
const JS_LOST_EXCEPTION: &str = "; the step threw a value that is not a step error, and \
     componentize-js lost it (its glue tries to return the value as a step-error and fails \
     with `expected a string, received [undefined]`): wrap `run` with `runJson` from \
     stephost.js, which writes the exception and its stack to stderr, or throw a StepError \
     (docs/steps/js.md)";

/// Whether the guest's stderr is componentize-js's glue failing to lower a
/// thrown value that is not a step error, with nothing of the value before
/// it: its text is then gone, and all that is left is the glue's own
/// TypeError. (`runJson` and the scaffolds print `uncaught exception: …`
/// first; then the text is there and no hint is needed.)
fn lost_js_exception(stderr: &str) -> bool {
    stderr.contains("expected a string, received [undefined]")
        && stderr.contains("export_run@")
        && !stderr.contains("uncaught exception")
}

fn classify(
    e: &wasmtime::Error,
    stopped: u8,
    memory_denied: bool,
    log: &AttemptLog,
    redactor: &Redactor,
) -> Outcome {
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => return Outcome::FuelExhausted,
        Some(Trap::StackOverflow) => return Outcome::StackOverflow,
        Some(Trap::Interrupt) => return stopped_outcome(stopped),
        _ => {}
    }
    if stopped != RUNNING {
        return stopped_outcome(stopped);
    }
    // A denied `memory.grow` returns -1 to the guest; what follows is
    // usually an allocator abort, which is the memory limit at work.
    if memory_denied {
        return Outcome::MemoryLimit;
    }
    let mut message = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{e:#}"),
    };
    let stderr = log.stderr_tail(MAX_TRAP_MESSAGE / 2);
    if lost_js_exception(&stderr) {
        message.push_str(JS_LOST_EXCEPTION);
    }
    if !stderr.is_empty() {
        message.push_str("; guest stderr: ");
        message.push_str(&stderr);
    }
    let backtrace = e
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| {
            // Drop wasmtime's "error while executing at wasm backtrace:"
            // header; the frames are what the record needs.
            bt.to_string()
                .lines()
                .filter(|l| !l.starts_with("error while executing"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|bt| !bt.is_empty());
    Outcome::Trapped {
        message: redactor.redact(&message),
        backtrace,
    }
}

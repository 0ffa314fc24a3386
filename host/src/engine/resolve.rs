//! Resolving a submission: the workflow version, the input against its
//! schema, the secrets it needs and the component each step runs. The
//! scheduler reuses it for every tick.

use super::{Engine, Error, Problem, Submission, VersionSel, WAIT_STEP, definition};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::{Digest, Execution, ExecutionId, Status, StepRun, StepStatus, TenantId};
use crate::store;

/// A workflow resolved for submissions: its version, its parsed
/// definition, the callback, and the step each of its steps runs. Each of
/// its executions is made by [`Prepared::execution`] after its input was
/// checked by [`Prepared::input_problems`]; a batch resolves once.
pub(super) struct Prepared {
    workflow_id: crate::model::WorkflowId,
    version: u32,
    validator: Option<jsonschema::Validator>,
    steps: Vec<StepRun>,
    callback: Option<crate::model::Callback>,
}

impl Prepared {
    /// What is wrong with an input against the workflow's `input_schema`;
    /// `at` is the input's path (`$.input_data`).
    pub(super) fn input_problems(&self, input: &serde_json::Value, at: &str) -> Vec<Problem> {
        let Some(validator) = &self.validator else {
            return Vec::new();
        };
        validator
            .iter_errors(input)
            .map(|e| Problem {
                path: format!(
                    "{at}{}",
                    definition::json_path(&e.instance_path().to_string())
                ),
                message: e.to_string(),
            })
            .collect()
    }

    /// A new queued (or, when postponed to a later time, scheduled)
    /// execution of the workflow, not yet stored.
    pub(super) fn execution(
        &self,
        tenant: &TenantId,
        input_data: serde_json::Value,
        custom_data: Option<serde_json::Value>,
        start: Option<super::StartAt>,
        at: crate::model::Timestamp,
    ) -> Execution {
        let scheduled_for = start.map(|s| match s {
            super::StartAt::Time(t) => t,
            super::StartAt::Delay(d) => super::dag::add(at, d),
        });
        let status = if scheduled_for.is_some_and(|t| t > at) {
            Status::Scheduled
        } else {
            Status::Queued
        };
        let mut exec = Execution {
            execution_id: ExecutionId::generate(),
            tenant_id: tenant.clone(),
            workflow_id: self.workflow_id.clone(),
            workflow_version: self.version,
            status: Status::Queued,
            input_data,
            output: None,
            error: None,
            custom_data,
            created_at: at,
            scheduled_for,
            schedule_id: None,
            scheduled_at: None,
            batch_id: None,
            started_at: None,
            finished_at: None,
            deadline_at: None,
            duration_ms: None,
            history: Vec::new(),
            steps: self.steps.clone(),
            pending_signals: Vec::new(),
            callback: self.callback.clone(),
            deliveries: Vec::new(),
            blocked: None,
            version: 0,
        };
        exec.enter(status, at);
        exec
    }
}

impl Engine {
    /// Resolves a submission into a queued execution, not yet stored: the
    /// workflow version, the input against its schema, the secrets it
    /// needs, and the digest each step runs.
    pub async fn resolve(&self, tenant: &TenantId, sub: Submission) -> Result<Execution, Error> {
        let prepared = self
            .prepare(tenant, &sub.workflow_id, sub.version, sub.callback)
            .await?;
        let problems = prepared.input_problems(&sub.input_data, "$.input_data");
        if !problems.is_empty() {
            return Err(Error::Invalid(
                "`input_data` does not match the workflow's `input_schema`".into(),
                problems,
            ));
        }
        Ok(prepared.execution(
            tenant,
            sub.input_data,
            sub.custom_data,
            sub.start,
            self.inner.clock.now(),
        ))
    }

    /// Resolves what every submission of a workflow shares: the version,
    /// the callback (the given one, else the definition's), the secrets
    /// its config needs, and the digest each step runs.
    pub(super) async fn prepare(
        &self,
        tenant: &TenantId,
        workflow_id: &crate::model::WorkflowId,
        version: VersionSel,
        callback: Option<crate::model::Callback>,
    ) -> Result<Prepared, Error> {
        let version = match version {
            VersionSel::Latest => None,
            VersionSel::Exact(v) => Some(v),
        };
        let records = self
            .submission_records(tenant, workflow_id, version)
            .await?
            .ok_or_else(|| {
                Error::WorkflowNotFound(match version {
                    Some(v) => format!("{workflow_id}` version `{v}"),
                    None => workflow_id.to_string(),
                })
            })?;
        let wf = &records.workflow;
        let def = self
            .inner
            .parsed(tenant, &wf.workflow_id, wf.version, &wf.definition)
            .map_err(Error::Unprocessable)?;
        let validator = def
            .input_schema
            .as_ref()
            .map(|schema| {
                jsonschema::validator_for(schema).map_err(|e| {
                    Error::Unprocessable(format!("the workflow's `input_schema` is invalid: {e}"))
                })
            })
            .transpose()?;
        let (callback, given_at) = match callback {
            Some(cb) => (Some(cb), "$.callback"),
            None => (def.callback.clone(), "$.definition.callback"),
        };
        if let Some(cb) = &callback {
            let problems = self.callback_problems(cb, given_at);
            if !problems.is_empty() {
                return Err(Error::Invalid(
                    "the callback cannot be delivered".into(),
                    problems,
                ));
            }
        }
        let wanted: Vec<String> = def.secret_names().into_iter().collect();
        if !wanted.is_empty() {
            let have = self
                .inner
                .secrets
                .open(tenant, &wanted)
                .await
                .map_err(Error::Unprocessable)?;
            let missing: Vec<Problem> = wanted
                .iter()
                .filter(|n| !have.contains_key(*n))
                .map(|n| Problem {
                    path: format!("secrets.{n}"),
                    message: format!(
                        "the workflow's config uses secret `{n}`, which this tenant does not have"
                    ),
                })
                .collect();
            if !missing.is_empty() {
                return Err(Error::Invalid(
                    "the workflow refers to missing secrets".into(),
                    missing,
                ));
            }
        }
        let mut steps = Vec::with_capacity(def.steps.len());
        let needs = def.needs();
        for (i, s) in def.steps.iter().enumerate() {
            let run = |step: String, digest: Option<Digest>| StepRun {
                id: s.id.clone(),
                step,
                digest,
                needs: needs[i].iter().map(|&j| def.steps[j].id.clone()).collect(),
                status: StepStatus::Pending,
                skipped_reason: None,
                next_attempt_at: None,
                error: None,
                output: None,
                attempts: Vec::new(),
                attempts_before_resume: 0,
                waiting: None,
            };
            let Some(step_ref) = &s.step else {
                steps.push(run(WAIT_STEP.to_owned(), None));
                continue;
            };
            let (name, pinned) = match step_ref.split_once('@') {
                Some((n, d)) => (n, Some(d)),
                None => (step_ref.as_str(), None),
            };
            let name: crate::model::StepName =
                name.parse().map_err(|e: String| Error::Unprocessable(e))?;
            let record = records.steps.get(name.as_str()).ok_or_else(|| {
                Error::Unprocessable(format!(
                    "step `{}` of workflow `{}` (step id `{}`) is no longer registered",
                    step_ref, workflow_id, s.id
                ))
            })?;
            let digest = match pinned {
                Some(d) => {
                    let d: Digest = d
                        .parse()
                        .map_err(|e| Error::Unprocessable(format!("step `{}`: {e}", s.id)))?;
                    if !record.versions.iter().any(|v| v.digest == d) {
                        return Err(Error::Unprocessable(format!(
                            "step `{}` pins `{step_ref}`, which is no longer registered",
                            s.id
                        )));
                    }
                    d
                }
                None => {
                    record
                        .versions
                        .last()
                        .ok_or_else(|| {
                            Error::Unprocessable(format!("step `{step_ref}` has no versions"))
                        })?
                        .digest
                }
            };
            steps.push(run(step_ref.clone(), Some(digest)));
        }
        Ok(Prepared {
            workflow_id: workflow_id.clone(),
            version: wf.version,
            validator,
            steps,
            callback,
        })
    }
}

impl Engine {
    /// What is wrong with a callback: no events, or a URL the outbound
    /// layer refuses as it stands (a scheme other than http and https,
    /// credentials, a forbidden address literal). A name is judged when
    /// the callback is delivered, by what it resolves to then. `at` is
    /// where the callback was given, for the problems' paths.
    pub fn callback_problems(&self, cb: &crate::model::Callback, at: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if cb.events.is_empty() {
            problems.push(Problem {
                path: format!("{at}.events"),
                message: "give at least one event, or leave `events` out for \
                          `[\"execution.finished\"]`"
                    .into(),
            });
        }
        if let Err(refusal) = self.inner.outbound.check(&cb.url) {
            problems.push(Problem {
                path: format!("{at}.url"),
                message: refusal.to_string(),
            });
        }
        problems
    }
}

/// What a submission resolves against: a workflow version and the
/// registered steps it names, by name.
pub(super) struct Resolved {
    pub(super) workflow: store::WorkflowRecord,
    pub(super) steps: HashMap<String, store::StepRecord>,
}

/// A small cache of recent lookups. Entries live [`Recent::TTL`] at most,
/// and the API forgets an entry as soon as it changes what it describes, so
/// this process never submits against a stale workflow or step version.
/// That holds only while no other process writes to the store: on a shared
/// store (PostgreSQL) it is not used.
pub(super) struct Recent<K, V> {
    entries: Mutex<HashMap<K, (std::time::Instant, V)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Recent<K, V> {
    const TTL: Duration = Duration::from_secs(1);
    const MAX: usize = 10_000;

    pub(super) fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (std::time::Instant, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, k: &K) -> Option<V> {
        self.lock()
            .get(k)
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, v)| v.clone())
    }

    pub(super) fn put(&self, k: K, v: V) {
        let mut entries = self.lock();
        if entries.len() >= Self::MAX {
            entries.retain(|_, (at, _)| at.elapsed() < Self::TTL);
            // All of them fresh: a burst of distinct lookups. Start over
            // rather than grow past the bound.
            if entries.len() >= Self::MAX {
                entries.clear();
            }
        }
        entries.insert(k, (std::time::Instant::now(), v));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    pub(super) fn forget(&self, keep: impl Fn(&K) -> bool) {
        self.lock().retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn recent_lookups_stay_within_their_bound_even_in_a_burst() {
        let recent: Recent<usize, usize> = Recent::new();
        let max = Recent::<usize, usize>::MAX;
        for i in 0..=max * 2 {
            recent.put(i, i);
            assert!(recent.len() <= max, "{} entries after {i}", recent.len());
        }
        // The newest is always there.
        assert_eq!(recent.get(&(max * 2)), Some(max * 2));
    }
}

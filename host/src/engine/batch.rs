//! Batch runs: one execution per input of one workflow, created together
//! in one store transaction, and the summary of where they stand.

use super::{Engine, Error, VersionSel};
use crate::model::{BatchId, BatchSummary, ExecutionId, TenantId, WorkflowId};
use crate::store::{Created, Idempotency};

/// The most problems a refused batch reports: past it the detail says how
/// many inputs were refused, and the first ones are enough to fix.
const MAX_PROBLEMS: usize = 100;

/// A request to run a workflow once per input.
#[derive(Debug, Clone)]
pub struct BatchSubmission {
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// Its version, resolved once for the whole batch.
    pub version: VersionSel,
    /// One execution per input, in this order.
    pub inputs: Vec<BatchInput>,
    /// Where every execution's callbacks go; without one, the
    /// definition's `callback`.
    pub callback: Option<crate::model::Callback>,
}

/// One input of a batch.
#[derive(Debug, Clone)]
pub struct BatchInput {
    /// The execution's input.
    pub input_data: serde_json::Value,
    /// Its own opaque client data (its callbacks carry it).
    pub custom_data: Option<serde_json::Value>,
}

/// A stored batch: its id and its executions' ids in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchAccepted {
    /// The batch.
    pub batch_id: BatchId,
    /// Its executions, in the order of the inputs.
    pub execution_ids: Vec<ExecutionId>,
    /// `false` when an idempotency key matched an earlier batch, which is
    /// returned instead.
    pub new: bool,
}

impl Engine {
    /// Accepts a batch: resolves the workflow once, checks every input
    /// (refusing the whole batch, with each problem's input index, when
    /// any is wrong), and stores one queued execution per input in one
    /// transaction. The claim loop starts them as slots free up.
    pub async fn submit_batch(
        &self,
        tenant: &TenantId,
        batch: BatchSubmission,
        idempotency: Option<Idempotency>,
    ) -> Result<BatchAccepted, Error> {
        let prepared = self
            .prepare(tenant, &batch.workflow_id, batch.version, batch.callback)
            .await?;
        let mut problems = Vec::new();
        let mut refused = Vec::new();
        for (i, input) in batch.inputs.iter().enumerate() {
            let found =
                prepared.input_problems(&input.input_data, &format!("$.inputs[{i}].input_data"));
            if !found.is_empty() {
                refused.push(i);
                problems.extend(found);
            }
        }
        if !refused.is_empty() {
            problems.truncate(MAX_PROBLEMS);
            return Err(Error::Invalid(refused_detail(&refused), problems));
        }
        let batch_id = BatchId::generate();
        let at = self.inner.clock.now();
        let executions: Vec<_> = batch
            .inputs
            .into_iter()
            .map(|input| {
                let mut exec =
                    prepared.execution(tenant, input.input_data, input.custom_data, None, at);
                exec.batch_id = Some(batch_id.clone());
                exec
            })
            .collect();
        let created = self
            .inner
            .store
            .create_batch(&executions, idempotency.as_ref())
            .await?;
        match created {
            Created::New => {
                self.inner.wake.notify_one();
                Ok(BatchAccepted {
                    batch_id,
                    execution_ids: executions.into_iter().map(|e| e.execution_id).collect(),
                    new: true,
                })
            }
            Created::Existing(first) => {
                let Some(batch_id) = first.batch_id.clone() else {
                    // The key was first used for a single run: another
                    // request, as a different body would be.
                    return Err(Error::IdempotencyKeyReused);
                };
                let members = self.inner.store.batch(tenant, &batch_id).await?;
                Ok(BatchAccepted {
                    batch_id,
                    execution_ids: members.into_iter().map(|m| m.execution_id).collect(),
                    new: false,
                })
            }
            Created::Conflict(e) => Err(Error::IdempotencyConflict(
                e.execution_id.clone(),
                e.status.as_str(),
            )),
            Created::KeyReused => Err(Error::IdempotencyKeyReused),
        }
    }

    /// Where a tenant's batch stands: counts of its kept executions per
    /// status.
    pub async fn batch(&self, tenant: &TenantId, id: &BatchId) -> Result<BatchSummary, Error> {
        let members = self.inner.store.batch(tenant, id).await?;
        BatchSummary::of(id.clone(), &members).ok_or_else(|| Error::BatchNotFound(id.to_string()))
    }
}

/// The detail of a refused batch: which inputs do not match.
fn refused_detail(refused: &[usize]) -> String {
    const SHOWN: usize = 10;
    let mut listed: Vec<String> = refused.iter().take(SHOWN).map(usize::to_string).collect();
    if refused.len() > SHOWN {
        listed.push(format!("and {} more", refused.len() - SHOWN));
    }
    let (noun, verb) = if refused.len() == 1 {
        ("input", "does")
    } else {
        ("inputs", "do")
    };
    format!(
        "{noun} {} {verb} not match the workflow's `input_schema`; no execution was created",
        listed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::refused_detail;

    #[test]
    fn the_detail_names_the_refused_inputs_and_how_many_more() {
        assert_eq!(
            refused_detail(&[3]),
            "input 3 does not match the workflow's `input_schema`; no execution was created"
        );
        assert_eq!(
            refused_detail(&[0, 7]),
            "inputs 0, 7 do not match the workflow's `input_schema`; no execution was created"
        );
        let many: Vec<usize> = (0..25).collect();
        assert!(refused_detail(&many).contains("0, 1, 2, 3, 4, 5, 6, 7, 8, 9, and 15 more"));
    }
}

//! Batch runs: many executions of one workflow created together, and the
//! summary of where they stand.

use serde::Serialize;

use super::{BatchId, ExecutionId, Status, Timestamp, WorkflowId};

/// One execution of a batch, as the store lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMember {
    /// The execution.
    pub execution_id: ExecutionId,
    /// Its workflow.
    pub workflow_id: WorkflowId,
    /// Its status now.
    pub status: Status,
    /// When it was created (the batch's creation).
    pub created_at: Timestamp,
}

/// How many executions are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatusCounts {
    /// Postponed.
    pub scheduled: u64,
    /// Waiting for a worker.
    pub queued: u64,
    /// Running.
    pub running: u64,
    /// Waiting for a time or a signal.
    pub waiting: u64,
    /// Paused by a client.
    pub paused: u64,
    /// Succeeded.
    pub succeeded: u64,
    /// Finished with failed `continue_on_error` steps.
    pub partially_succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Ran past the deadline.
    pub timed_out: u64,
}

impl StatusCounts {
    fn add(&mut self, status: Status) {
        let n = match status {
            Status::Scheduled => &mut self.scheduled,
            Status::Queued => &mut self.queued,
            Status::Running => &mut self.running,
            Status::Waiting => &mut self.waiting,
            Status::Paused => &mut self.paused,
            Status::Succeeded => &mut self.succeeded,
            Status::PartiallySucceeded => &mut self.partially_succeeded,
            Status::Failed => &mut self.failed,
            Status::Cancelled => &mut self.cancelled,
            Status::TimedOut => &mut self.timed_out,
        };
        *n += 1;
    }
}

/// Where a batch run stands: `GET /v1/batches/{batch_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BatchSummary {
    /// The batch's id.
    #[schema(value_type = String)]
    pub batch_id: BatchId,
    /// The workflow its executions run.
    #[schema(value_type = String)]
    pub workflow_id: WorkflowId,
    /// When it was created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// How many of its executions are kept (all of them until the
    /// finished ones pass the server's `execution-retention`).
    pub total: u64,
    /// How many of those have finished, whatever the outcome.
    pub finished: u64,
    /// Whether every one has finished.
    pub done: bool,
    /// How many are in each status.
    pub counts: StatusCounts,
}

impl BatchSummary {
    /// The summary of a batch's members; `None` when it has none (no such
    /// batch, or all of it deleted).
    pub fn of(batch_id: BatchId, members: &[BatchMember]) -> Option<Self> {
        let first = members.first()?;
        let mut counts = StatusCounts::default();
        let mut finished = 0;
        for m in members {
            counts.add(m.status);
            finished += u64::from(m.status.is_terminal());
        }
        let total = members.len() as u64;
        Some(Self {
            batch_id,
            workflow_id: first.workflow_id.clone(),
            created_at: members
                .iter()
                .map(|m| m.created_at)
                .min()
                .unwrap_or(first.created_at),
            total,
            finished,
            done: finished == total,
            counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(i: u32, status: Status) -> BatchMember {
        BatchMember {
            execution_id: ExecutionId::new_unchecked(format!("e{i}")),
            workflow_id: WorkflowId::new_unchecked("wf"),
            status,
            created_at: Timestamp::from_second(1_000 + i64::from(i)).unwrap(),
        }
    }

    #[test]
    fn a_summary_counts_each_status_and_is_done_only_when_all_finished() {
        assert_eq!(BatchSummary::of(BatchId::new_unchecked("b"), &[]), None);
        let members = [
            member(3, Status::Succeeded),
            member(1, Status::Queued),
            member(2, Status::Failed),
            member(4, Status::Succeeded),
        ];
        let s = BatchSummary::of(BatchId::new_unchecked("b"), &members).unwrap();
        assert_eq!(s.total, 4);
        assert_eq!(s.finished, 3);
        assert!(!s.done);
        assert_eq!(
            s.counts,
            StatusCounts {
                queued: 1,
                succeeded: 2,
                failed: 1,
                ..StatusCounts::default()
            }
        );
        assert_eq!(s.created_at, Timestamp::from_second(1_001).unwrap());
        let all_done = [member(1, Status::Cancelled), member(2, Status::TimedOut)];
        let s = BatchSummary::of(BatchId::new_unchecked("b"), &all_done).unwrap();
        assert!(s.done);
        assert_eq!(s.finished, 2);
    }
}

//! The work's vocabulary: leases, the fenced commit and what follows it,
//! claims and renewals, and what follows a delivery attempt.

use super::{Error, Result};
use crate::model::{DeliveryStatus, Execution, ExecutionId, NewDelivery, NodeId, Timestamp};

/// A lease to take: who holds it and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder.
    pub owner: NodeId,
    /// When it lapses unless renewed; after that another owner may claim.
    pub until: Timestamp,
}

/// What happens to an execution's lease and `wake_at` with a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The committer goes on driving; the lease is renewed until `until`.
    Hold {
        /// The lease's new expiry.
        until: Timestamp,
    },
    /// Nothing can run before `wake_at`: the lease is released. If the inbox
    /// holds an event the commit did not consume, the execution is due at
    /// once instead (no event is missed between "check" and "park").
    Park {
        /// When it is next due.
        wake_at: Timestamp,
    },
    /// The execution is terminal: it leaves the claim path, the lease is
    /// released and its inbox is emptied. If a schedule started it and has
    /// a buffered tick waiting, the schedule is due at the execution's
    /// `finished_at`.
    Finish,
}

/// One fenced state change of an execution.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// The new state.
    pub execution: &'a Execution,
    /// The version the committer holds: the commit is refused with
    /// [`Error::LeaseLost`] unless the stored version and lease owner still
    /// match.
    pub version: u64,
    /// The committer.
    pub owner: &'a NodeId,
    /// Inbox events with `seq` up to this one were acted on by this state
    /// and are deleted with it (0: none).
    pub consumed: u64,
    /// What happens to the lease.
    pub next: Next,
    /// Callbacks reporting this state, stored in the same transaction (the
    /// outbox): due at their `created_at`, delivered in the order given
    /// after every earlier delivery of the execution.
    pub deliveries: &'a [NewDelivery],
}

impl Commit<'_> {
    /// Refuses a commit whose status and `next` disagree: a terminal status
    /// must finish, and only a terminal status may.
    pub fn check(&self) -> Result<()> {
        if matches!(self.next, Next::Finish) != self.execution.status.is_terminal() {
            return Err(Error::Backend(format!(
                "execution {} in status {} cannot be committed with {:?}",
                self.execution.execution_id,
                self.execution.status.as_str(),
                self.next
            )));
        }
        Ok(())
    }
}

/// What follows an attempt at a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    /// Attempt again at this time.
    Retry(Timestamp),
    /// No more attempts: delivered, failed, gone or refused.
    Done(DeliveryStatus),
}

/// An execution a claim round took.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The execution, its version bumped by the claim.
    pub execution: Execution,
    /// Whether its inbox held events when it was claimed (the driver reads
    /// them first; without any, it skips that read).
    pub has_events: bool,
}

/// How a claim shares the due work out between tenants, beyond what each
/// tenant's row says (its own `weight` and running limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fairness {
    /// The running limit of a tenant without one of its own (the server's
    /// `quota-max-concurrent-executions`).
    pub max_running: Option<u64>,
}

/// What one claim round found.
#[derive(Debug, Clone, Default)]
pub struct ClaimRound {
    /// What [`Store::claim_due`](super::Store::claim_due) would have taken, in the same order.
    pub claimed: Vec<Claimed>,
    /// What [`Store::next_wake_at`](super::Store::next_wake_at) would have answered after the claim
    /// (a backend may compute it beside the claim, from the snapshot the
    /// claim read).
    pub next_wake_at: Option<Timestamp>,
}

/// An execution whose lease a renewal extended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its id.
    pub id: ExecutionId,
    /// Whether its inbox holds events (the driver should read them).
    pub has_events: bool,
}

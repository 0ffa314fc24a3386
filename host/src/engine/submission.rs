//! A request to run a workflow, and what submitting it did.

use std::time::Duration;

use crate::model::{Execution, Timestamp, WorkflowId};

/// Which workflow version to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSel {
    /// The newest version at submission.
    Latest,
    /// A specific version.
    Exact(u32),
}

/// A request to run a workflow.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// Its version.
    pub version: VersionSel,
    /// The execution's input.
    pub input_data: serde_json::Value,
    /// Opaque client data.
    pub custom_data: Option<serde_json::Value>,
    /// For a postponed run: when it starts.
    pub start: Option<StartAt>,
    /// Where callbacks go; without one, the definition's `callback`.
    pub callback: Option<crate::model::Callback>,
}

/// When a postponed run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At this time (a time already past starts it at once).
    Time(Timestamp),
    /// This long after it is accepted.
    Delay(Duration),
}

/// What a submission did.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// A new execution was accepted.
    New(Execution),
    /// An idempotency key matched an earlier execution.
    Existing(Execution),
}

impl Submitted {
    /// The execution either way.
    pub fn execution(&self) -> &Execution {
        match self {
            Self::New(e) | Self::Existing(e) => e,
        }
    }
}

//! What both backends share of the audit log: the entry, its page and its
//! cursor.

use serde::Serialize;

use crate::model::{TenantId, Timestamp};
use crate::store::{Error, Result};

/// One change of a resource, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Its place in the log (`aud_<n>`, increasing).
    pub audit_id: String,
    /// When the change was made.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The tenant whose resource changed; null for the server's own (admin
    /// tokens).
    pub tenant_id: Option<String>,
    /// The token that made the change (`tok_…`, or `admin` for the
    /// configured admin token).
    pub token_id: String,
    /// What was done: `step.put`, `workflow.delete`, `quota.set`, …
    pub action: String,
    /// The request that did it: method and path.
    pub request: String,
}

/// A new entry; the store gives it its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    /// When.
    pub at: Timestamp,
    /// Whose.
    pub tenant_id: Option<TenantId>,
    /// By which token.
    pub token_id: String,
    /// What.
    pub action: String,
    /// The request.
    pub request: String,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// The entries.
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// An entry as both backends read it: seq, at (ns), tenant_id, token_id,
/// action, request.
pub(crate) type AuditRow = (i64, i64, Option<String>, String, String, String);

/// The sequence number a cursor stands for (entries before it follow);
/// `i64::MAX` without one.
pub(crate) fn audit_cursor(cursor: Option<&str>) -> Result<i64> {
    match cursor {
        None => Ok(i64::MAX),
        Some(c) => c
            .strip_prefix("aud_")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::InvalidCursor(format!("`{c}` is not one this server gave out"))),
    }
}

/// A page of `limit` from up to `limit + 1` rows read, newest first.
pub(crate) fn audit_page(rows: Vec<AuditRow>, limit: u32) -> Result<AuditPage> {
    let more = rows.len() > limit as usize;
    let items = rows
        .into_iter()
        .take(limit as usize)
        .map(|(seq, at, tenant_id, token_id, action, request)| {
            Ok(AuditEntry {
                audit_id: format!("aud_{seq}"),
                at: crate::store::codec::from_nanos(at)?,
                tenant_id,
                token_id,
                action,
                request,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let next_cursor = more
        .then(|| items.last().map(|e| e.audit_id.clone()))
        .flatten();
    Ok(AuditPage { items, next_cursor })
}

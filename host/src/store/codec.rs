//! How values become columns and back, the same for every backend: times
//! as nanoseconds since the epoch, records as JSON text (so that numbers
//! survive exactly as written), and opaque listing cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Error, Result};
use super::{NodeRecord, StepRecord, StepVersion};
use crate::model::{Execution, NodeId, Schedule, StepName, TenantId, Timestamp};

/// Encodes a value as JSON text.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Backend(format!("cannot encode JSON: {e}")))
}

/// Nanoseconds since the epoch, saturating outside a 64-bit integer's range
/// so that strict comparisons stay correct at the extremes.
pub(crate) fn nanos(at: Timestamp) -> i64 {
    let ns = at.as_nanosecond();
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

/// The timestamp `nanos` made.
pub(crate) fn from_nanos(ns: i64) -> Result<Timestamp> {
    Timestamp::from_nanosecond(i128::from(ns))
        .map_err(|e| Error::Backend(format!("a stored time is out of range: {e}")))
}

/// A listing cursor: the last row's sequence number, opaque to clients.
pub(crate) fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(seq.to_be_bytes())
}

/// The sequence number in a cursor `encode_cursor` made.
pub(crate) fn decode_cursor(cursor: &str) -> Result<i64> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| Error::InvalidCursor(format!("`{cursor}` is not a cursor this server made")))
}

/// A stored version number as the model's.
pub(crate) fn version(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A model's count or version as a column.
pub(crate) fn column(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Decodes a stored execution; the tenant and the version are columns, not
/// part of the document.
pub(crate) fn decode_execution(tenant: &str, doc: &str, v: i64) -> Result<Execution> {
    let mut execution: Execution = serde_json::from_str(doc)
        .map_err(|e| Error::Backend(format!("a stored execution is not valid: {e}")))?;
    execution.tenant_id = TenantId::new_unchecked(tenant);
    execution.version = version(v);
    Ok(execution)
}

/// Decodes a stored schedule, as [`decode_execution`] does an execution.
pub(crate) fn decode_schedule(tenant: &str, doc: &str, v: i64) -> Result<Schedule> {
    let mut schedule: Schedule = serde_json::from_str(doc)
        .map_err(|e| Error::Backend(format!("a stored schedule is not valid: {e}")))?;
    schedule.tenant_id = TenantId::new_unchecked(tenant);
    schedule.version = version(v);
    Ok(schedule)
}

/// `node_id, started_ns, heartbeat_ns, claim_work, executions held`: a
/// node's row as both backends select it.
pub(crate) type NodeColumns = (String, i64, i64, bool, i64);

/// Decodes a node's row.
pub(crate) fn decode_node(
    (id, started, beat, claim_work, held): NodeColumns,
) -> Result<NodeRecord> {
    Ok(NodeRecord {
        node_id: NodeId::new_unchecked(id),
        started_at: from_nanos(started)?,
        last_heartbeat_at: from_nanos(beat)?,
        claim_work,
        executions_held: u64::try_from(held).unwrap_or(0),
    })
}

/// Groups `(step name, version)` rows, ordered by name and then by age,
/// into one record per step.
pub(crate) fn group_steps(
    rows: impl IntoIterator<Item = Result<(String, StepVersion)>>,
) -> Result<Vec<StepRecord>> {
    let mut steps: Vec<StepRecord> = Vec::new();
    for row in rows {
        let (name, version) = row?;
        match steps.last_mut() {
            Some(step) if step.name.as_str() == name => step.versions.push(version),
            _ => steps.push(StepRecord {
                name: StepName::new_unchecked(name),
                versions: vec![version],
            }),
        }
    }
    Ok(steps)
}

/// The step names a workflow definition refers to (`steps[].step` without
/// an `@digest` pin), sorted, each once.
pub(crate) fn step_names(definition: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = definition
        .get("steps")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("step")?.as_str())
        .map(|r| r.split_once('@').map_or(r, |(name, _)| name).to_owned())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Sorts tokens oldest first (then by id), as `Store::tokens` answers.
pub(crate) fn sort_tokens(tokens: &mut [crate::store::Token]) {
    tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}

/// The tenant id a tenant listing cursor holds (the last id of the page
/// before); "" for the first page.
pub(crate) fn tenant_cursor(cursor: Option<&str>) -> Result<String> {
    match cursor {
        None => Ok(String::new()),
        Some(c)
            if c.len() <= 64
                && c.starts_with("ten_")
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Ok(c.to_owned())
        }
        Some(c) => Err(Error::InvalidCursor(format!(
            "`{c}` is not one this server gave out"
        ))),
    }
}

/// A page of tenants from up to `limit + 1` read in order: the extra one
/// says there is a next page, which starts after the page's last id.
pub(crate) fn tenant_page(
    mut items: Vec<crate::store::Tenant>,
    limit: u32,
) -> crate::store::TenantPage {
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|t| t.id.as_str().to_owned())
    } else {
        None
    };
    crate::store::TenantPage { items, next_cursor }
}

/// The columns of a delivery row the API shows, in this order:
/// `id, event, step, url, status, created_ns, due_ns, attempts`.
pub(crate) const DELIVERY_COLUMNS: &str =
    "id, event, step, url, status, created_ns, due_ns, attempts";

/// A delivery row as its columns.
pub(crate) type DeliveryRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    Option<i64>,
    String,
);

/// Decodes a delivery row ([`DELIVERY_COLUMNS`]).
pub(crate) fn decode_delivery(row: DeliveryRow) -> Result<crate::model::Delivery> {
    let (id, event, step, url, status, created_ns, due_ns, attempts) = row;
    Ok(crate::model::Delivery {
        webhook_id: crate::model::NewDelivery::webhook_id(&id),
        delivery_id: id,
        event: crate::model::EventType::parse(&event)
            .ok_or_else(|| Error::Backend(format!("a stored delivery has event `{event}`")))?,
        step,
        url,
        status: crate::model::DeliveryStatus::parse(&status)
            .ok_or_else(|| Error::Backend(format!("a stored delivery has status `{status}`")))?,
        created_at: from_nanos(created_ns)?,
        next_attempt_at: due_ns.map(from_nanos).transpose()?,
        attempts: serde_json::from_str(&attempts).map_err(|e| {
            Error::Backend(format!("a stored delivery's attempts are not valid: {e}"))
        })?,
    })
}

/// The most attempts a delivery keeps; older ones are dropped first.
pub(crate) const MAX_KEPT_ATTEMPTS: usize = 50;

/// A delivery's attempts (JSON text) with `attempt` added, keeping the
/// newest [`MAX_KEPT_ATTEMPTS`].
pub(crate) fn append_attempt(
    attempts: &str,
    attempt: &crate::model::DeliveryAttempt,
) -> Result<String> {
    let mut list: Vec<serde_json::Value> = serde_json::from_str(attempts)
        .map_err(|e| Error::Backend(format!("a stored delivery's attempts are not valid: {e}")))?;
    list.push(
        serde_json::to_value(attempt)
            .map_err(|e| Error::Backend(format!("cannot encode JSON: {e}")))?,
    );
    let over = list.len().saturating_sub(MAX_KEPT_ATTEMPTS);
    list.drain(..over);
    to_json(&list)
}

/// What a stored delivery row's `status` and `due_ns` become after an
/// attempt.
pub(crate) fn after_attempt(next: super::DeliveryNext) -> (&'static str, Option<i64>) {
    match next {
        super::DeliveryNext::Retry(at) => (
            crate::model::DeliveryStatus::Pending.as_str(),
            Some(nanos(at)),
        ),
        super::DeliveryNext::Done(status) => (status.as_str(), None),
    }
}

/// What a create with an idempotency key does when the key points at
/// `existing` (`None`: unused, or its execution is gone, which is as good
/// as unused): the earlier execution to answer with, or `None` to create
/// (and move the key to the new one). Both backends decide by it.
pub(crate) fn on_key(
    existing: Option<Execution>,
    on_conflict: super::OnConflict,
) -> Option<super::Created> {
    use super::{Created, OnConflict};
    match (existing, on_conflict) {
        (Some(e), OnConflict::ReturnExisting) => Some(Created::Existing(Box::new(e))),
        (Some(e), OnConflict::Fail) => Some(Created::Conflict(Box::new(e))),
        (Some(e), OnConflict::FailOnRunning) if !e.status.is_terminal() => {
            Some(Created::Conflict(Box::new(e)))
        }
        (Some(_) | None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        for bad in ["", "abc", "!!!!", URL_SAFE_NO_PAD.encode([0u8; 9]).as_str()] {
            assert!(
                matches!(decode_cursor(bad), Err(Error::InvalidCursor(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn nanos_saturate_and_round_trip() {
        let t: Timestamp = "2026-12-01T10:00:00.123456789Z".parse().unwrap();
        assert_eq!(from_nanos(nanos(t)).unwrap(), t);
        assert_eq!(nanos(Timestamp::MAX), i64::MAX);
        assert_eq!(nanos(Timestamp::MIN), i64::MIN);
    }
}

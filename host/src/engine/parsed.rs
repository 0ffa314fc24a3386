//! The engine's parsed definitions, by tenant, workflow and version: a
//! stored version never changes, so its parsed form is kept for the next
//! execution of it, within two bounds, least recently used dropped first:
//!
//! - [`MAX_DEFINITIONS`] versions, and
//! - [`MAX_DEFINITION_BYTES`] of their stored JSON text (a parsed
//!   definition takes a small multiple of its text).
//!
//! A dropped definition is parsed again from its stored text when next
//! needed: a cost, never a change of behaviour.

use std::sync::{Arc, Mutex};

use hashlink::LruCache;

use super::definition::Definition;
use crate::model::{TenantId, WorkflowId};

/// The most definition versions kept parsed.
pub(super) const MAX_DEFINITIONS: usize = 10_000;
/// The most bytes of stored definition text kept parsed (256 MiB).
pub(super) const MAX_DEFINITION_BYTES: usize = 256 << 20;

type Key = (TenantId, WorkflowId, u32);

/// Parsed definitions, bounded by count and by bytes.
#[derive(Debug)]
pub(super) struct Parsed {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

#[derive(Debug)]
struct Inner {
    /// Each definition with the length of its text.
    entries: LruCache<Key, (Arc<Definition>, usize)>,
    bytes: usize,
}

impl Parsed {
    pub(super) fn new() -> Self {
        Self::with_bounds(MAX_DEFINITIONS, MAX_DEFINITION_BYTES)
    }

    fn with_bounds(max_count: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: LruCache::new(max_count),
                bytes: 0,
            }),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The parsed definition of `key`, marked as just used.
    pub(super) fn get(&self, key: &Key) -> Option<Arc<Definition>> {
        self.lock().entries.get(key).map(|(d, _)| d.clone())
    }

    /// Keeps `definition`, parsed from `bytes` of text, dropping the least
    /// recently used ones until both bounds hold (the newest is kept even
    /// when it alone is over the byte bound: it is in use).
    pub(super) fn insert(&self, key: Key, definition: Arc<Definition>, bytes: usize) {
        let mut inner = self.lock();
        let Inner {
            entries,
            bytes: total,
        } = &mut *inner;
        if let Some((_, old)) = entries.remove(&key) {
            *total -= old;
        }
        *total += bytes;
        while entries.len() >= entries.capacity()
            || (*total > self.max_bytes && !entries.is_empty())
        {
            match entries.remove_lru() {
                Some((_, (_, b))) => *total -= b,
                None => break,
            }
        }
        entries.insert(key, (definition, bytes));
    }

    /// Drops every definition of `tenant` (it was deleted).
    pub(super) fn forget_tenant(&self, tenant: &TenantId) {
        let mut inner = self.lock();
        let Inner { entries, bytes } = &mut *inner;
        entries.retain(|(t, _, _), (_, b)| {
            let keep = t != tenant;
            if !keep {
                *bytes -= *b;
            }
            keep
        });
    }

    /// How many definitions are kept.
    pub(super) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// How many definitions, and how many bytes of text, are kept.
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Key {
        (
            TenantId::new_unchecked("ten_a"),
            WorkflowId::new_unchecked("wf"),
            i,
        )
    }

    fn definition() -> Arc<Definition> {
        Arc::new(
            Definition::from_value(serde_json::json!({
                "steps": [{"id": "a", "step": "echo"}]
            }))
            .unwrap(),
        )
    }

    #[test]
    fn the_count_bound_drops_the_least_recently_used() {
        let parsed = Parsed::with_bounds(100, usize::MAX);
        let d = definition();
        for i in 0..100 {
            parsed.insert(key(i), d.clone(), 10);
        }
        // Version 0 is used again: version 1 is now the oldest.
        assert!(parsed.get(&key(0)).is_some());
        for i in 100..150 {
            parsed.insert(key(i), d.clone(), 10);
        }
        assert_eq!(parsed.size(), (100, 1000));
        assert!(parsed.get(&key(0)).is_some(), "used recently, kept");
        assert!(parsed.get(&key(1)).is_none(), "the oldest went first");
        assert!(parsed.get(&key(50)).is_none());
        assert!(parsed.get(&key(51)).is_some());
        assert!(parsed.get(&key(149)).is_some());
    }

    #[test]
    fn a_deleted_tenants_definitions_are_dropped() {
        let parsed = Parsed::with_bounds(100, usize::MAX);
        let d = definition();
        let other = (
            TenantId::new_unchecked("ten_b"),
            WorkflowId::new_unchecked("wf"),
            1,
        );
        parsed.insert(key(1), d.clone(), 10);
        parsed.insert(key(2), d.clone(), 10);
        parsed.insert(other.clone(), d, 7);
        parsed.forget_tenant(&TenantId::new_unchecked("ten_a"));
        assert_eq!(parsed.size(), (1, 7));
        assert!(parsed.get(&other).is_some());
    }

    #[test]
    fn the_byte_bound_holds_and_the_newest_is_kept() {
        let parsed = Parsed::with_bounds(1000, 1 << 20);
        let d = definition();
        for i in 0..100 {
            parsed.insert(key(i), d.clone(), 100 << 10);
        }
        let (count, bytes) = parsed.size();
        assert_eq!(count, 10, "ten of 100 KiB fit in 1 MiB");
        assert!(bytes <= 1 << 20, "{bytes}");
        assert!(parsed.get(&key(99)).is_some());
        assert!(parsed.get(&key(89)).is_none());
        // One over the whole bound is kept alone: it is the one in use.
        parsed.insert(key(1000), d.clone(), 2 << 20);
        assert_eq!(parsed.size(), (1, 2 << 20));
        // Inserting a key again counts its bytes once.
        parsed.insert(key(1000), d, 1 << 10);
        assert_eq!(parsed.size(), (1, 1 << 10));
    }
}

//! The resource limiter that enforces the memory cap of an attempt and
//! records the peak. The limits themselves are plain data in `model`.

/// Enforces the memory cap of one attempt across all of its linear memories
/// and its tables' element bound, and records the peak. A denied growth
/// makes `memory.grow` (or `table.grow`) return -1, as the spec says; the
/// flag lets the sandbox classify the trap that usually follows (an
/// allocator abort) as `memory_limit`.
#[derive(Debug)]
pub(crate) struct MemoryMeter {
    limit: usize,
    total: usize,
    pub(crate) peak: usize,
    pub(crate) denied: bool,
    max_table_elements: usize,
}

impl MemoryMeter {
    pub(crate) fn new(limit: u64, max_table_elements: usize) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            total: 0,
            peak: 0,
            denied: false,
            max_table_elements,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryMeter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow_by = desired.saturating_sub(current);
        let new_total = self.total.saturating_add(grow_by);
        if new_total > self.limit || maximum.is_some_and(|m| desired > m) {
            self.denied = true;
            return Ok(false);
        }
        self.total = new_total;
        self.peak = self.peak.max(new_total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_table_elements && maximum.is_none_or(|m| desired <= m);
        // Table elements are host memory too: a trap after a refused
        // growth is classified like one after a refused memory growth.
        self.denied |= !allowed;
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    #[test]
    fn meter_tracks_the_total_across_memories_and_denies_past_the_limit() {
        let mut m = MemoryMeter::new(100, 10);
        assert!(m.memory_growing(0, 60, None).unwrap());
        assert!(m.memory_growing(0, 30, None).unwrap());
        assert_eq!(m.peak, 90);
        assert!(!m.memory_growing(60, 80, None).unwrap());
        assert!(m.denied);
        assert_eq!(m.peak, 90);
        let mut t = MemoryMeter::new(100, 10);
        assert!(t.table_growing(0, 10, None).unwrap());
        assert!(!t.denied);
        assert!(!t.table_growing(0, 11, None).unwrap());
        assert!(t.denied);
    }
}

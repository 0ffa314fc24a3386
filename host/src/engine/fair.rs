//! Fair shares of this process's workers between tenants.
//!
//! Every attempt asks for a worker here before it runs. While workers are
//! free it gets one at once; when attempts wait, a worker that frees goes
//! to the tenant that has used the least worker time for its weight
//! (start-time fair queueing by measured attempt time): each grant charges
//! the tenant its typical attempt time over its weight, and the attempt's
//! end corrects the charge to what it really took. So a tenant of slow
//! steps gets no more worker time than one of fast steps, and a tenant of
//! weight 3 gets three times the worker time of one of weight 1 while
//! both have attempts waiting. A tenant that had nothing waiting starts
//! level with the least-served busy tenant, so idle time banks no credit;
//! ties go to the tenant running fewer attempts, then to the oldest
//! request. Within a tenant, attempts of sync calls go first, then the
//! others in the order they asked.
//!
//! A request whose caller gave up (the engine is draining) is skipped when
//! its turn comes. The state is bounded by the tenants with attempts
//! running or waiting: a tenant with neither has no entry.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashlink::LruCache;
use tokio::sync::oneshot;

use crate::model::TenantId;

/// What an attempt is assumed to take before any has been measured.
const FIRST_ESTIMATE: f64 = 0.01;
/// How much each measured attempt moves the running estimates.
const EWMA: f64 = 0.2;
/// The most tenants whose attempt time is remembered; past it the one
/// whose attempt ended longest ago is forgotten (its next attempt starts
/// from the typical time again).
const MAX_ESTIMATES: usize = 10_000;

/// The workers of one process, shared fairly between tenants.
#[derive(Debug)]
pub(crate) struct Workers {
    count: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    next_seq: u64,
    lanes: HashMap<TenantId, Lane>,
    /// Seconds an attempt of any tenant typically takes (a moving
    /// average): the first estimate of a tenant not measured yet.
    typical: f64,
    /// Seconds an attempt of each tenant measured typically takes (a
    /// moving average from its first attempt), kept while it is idle; at
    /// most [`MAX_ESTIMATES`] tenants, least recently measured dropped.
    estimates: LruCache<TenantId, f64>,
}

/// One tenant with attempts running or waiting.
#[derive(Debug)]
struct Lane {
    weight: f64,
    /// Worker seconds charged to it, over its weight.
    used: f64,
    /// The part of `used` charged for attempts still running.
    inflight: f64,
    /// Seconds one of its attempts typically takes (a moving average).
    estimate: f64,
    running: usize,
    sync: VecDeque<Waiter>,
    rest: VecDeque<Waiter>,
}

impl Lane {
    fn front_seq(&self) -> Option<u64> {
        self.sync.front().or(self.rest.front()).map(|w| w.seq)
    }

    fn is_idle(&self) -> bool {
        self.running == 0 && self.sync.is_empty() && self.rest.is_empty()
    }
}

#[derive(Debug)]
struct Waiter {
    seq: u64,
    tx: oneshot::Sender<f64>,
}

/// A request for a worker, in line. Dropping it gives up its place, or
/// the worker it was just granted (so a caller that stops waiting, as
/// one does when the engine drains or a driver is abandoned, never keeps
/// a worker from the others).
#[derive(Debug)]
struct Request {
    workers: Arc<Workers>,
    tenant: TenantId,
    rx: oneshot::Receiver<f64>,
    /// The grant became a [`Slot`].
    taken: bool,
}

impl Request {
    async fn granted(mut self) -> Slot {
        // The sender is dropped unsent only when this receiver is gone.
        let charged = (&mut self.rx).await.unwrap_or(0.0);
        self.slot(charged)
    }

    fn slot(mut self, charged: f64) -> Slot {
        self.taken = true;
        Slot {
            workers: self.workers.clone(),
            tenant: self.tenant.clone(),
            charged,
            started: Instant::now(),
        }
    }

    /// The worker, if it was granted already.
    #[cfg(test)]
    fn try_granted(&mut self) -> Option<f64> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        // Grants are sent under the lock, so none can arrive after this
        // looked: a waiting request is skipped when its turn comes.
        let mut st = self.workers.lock();
        if let Ok(charged) = self.rx.try_recv() {
            // Unused: nothing to charge.
            st.release(&self.tenant, charged, 0.0);
        }
    }
}

/// A worker, held for one attempt; dropping it frees the worker and
/// charges the tenant what the attempt took.
#[derive(Debug)]
pub(crate) struct Slot {
    workers: Arc<Workers>,
    tenant: TenantId,
    charged: f64,
    started: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let took = self.started.elapsed().as_secs_f64();
        let mut st = self.workers.lock();
        st.typical += EWMA * (took - st.typical);
        let estimate = match st.estimates.peek(&self.tenant) {
            Some(e) => e + EWMA * (took - e),
            None => took,
        };
        st.estimates.insert(self.tenant.clone(), estimate);
        if let Some(lane) = st.lanes.get_mut(&self.tenant) {
            lane.estimate = estimate;
        }
        st.release(&self.tenant, self.charged, took);
    }
}

impl State {
    /// Frees a worker `tenant` was granted with `charged`, having used it
    /// for `took` seconds, and hands it on.
    fn release(&mut self, tenant: &TenantId, charged: f64, took: f64) {
        if let Some(lane) = self.lanes.get_mut(tenant) {
            lane.used += (took - charged) / lane.weight;
            lane.inflight = (lane.inflight - charged / lane.weight).max(0.0);
            lane.running = lane.running.saturating_sub(1);
            if lane.is_idle() {
                self.lanes.remove(tenant);
            }
        }
        self.free += 1;
        self.dispatch();
    }

    /// Hands free workers to the waiting attempts whose turn it is.
    fn dispatch(&mut self) {
        while self.free > 0 {
            let Some(tenant) = self
                .lanes
                .iter()
                .filter_map(|(t, lane)| lane.front_seq().map(|seq| (t, lane, seq)))
                .min_by(|(_, a, sa), (_, b, sb)| {
                    a.used
                        .total_cmp(&b.used)
                        .then(a.running.cmp(&b.running))
                        .then(sa.cmp(sb))
                })
                .map(|(t, _, _)| t.clone())
            else {
                return;
            };
            let lane = self.lanes.get_mut(&tenant).expect("a lane just found");
            let waiter = lane
                .sync
                .pop_front()
                .or_else(|| lane.rest.pop_front())
                .expect("a lane with a waiter");
            let charge = lane.estimate;
            if waiter.tx.send(charge).is_ok() {
                lane.used += charge / lane.weight;
                lane.inflight += charge / lane.weight;
                lane.running += 1;
                self.free -= 1;
            } else if lane.is_idle() {
                // Its caller gave up, and it was the tenant's last.
                self.lanes.remove(&tenant);
            }
        }
    }
}

impl Workers {
    /// `count` workers (at least one).
    pub(crate) fn new(count: usize) -> Self {
        let count = count.max(1);
        Self {
            count,
            state: Mutex::new(State {
                free: count,
                next_seq: 0,
                lanes: HashMap::new(),
                typical: FIRST_ESTIMATE,
                estimates: LruCache::new(MAX_ESTIMATES),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a worker for an attempt of `tenant`, whose weight is
    /// `weight`; `sync` puts it before the tenant's other waiting attempts.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        tenant: &TenantId,
        weight: u32,
        sync: bool,
    ) -> Slot {
        self.request(tenant, weight, sync).granted().await
    }

    /// Asks for a worker: the request takes its place in line now.
    fn request(self: &Arc<Self>, tenant: &TenantId, weight: u32, sync: bool) -> Request {
        let mut st = self.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        let estimate = st.estimates.peek(tenant).copied().unwrap_or(st.typical);
        // What the least-served busy tenant has used for attempts that
        // ended: where a tenant that had nothing going on starts.
        let floor = st
            .lanes
            .values()
            .map(|l| l.used - l.inflight)
            .min_by(f64::total_cmp)
            .unwrap_or(0.0);
        let lane = st.lanes.entry(tenant.clone()).or_insert_with(|| Lane {
            weight: 1.0,
            used: floor,
            inflight: 0.0,
            estimate,
            running: 0,
            sync: VecDeque::new(),
            rest: VecDeque::new(),
        });
        lane.weight = f64::from(weight.max(1));
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter { seq, tx };
        if sync {
            lane.sync.push_back(waiter);
        } else {
            lane.rest.push_back(waiter);
        }
        st.dispatch();
        Request {
            workers: self.clone(),
            tenant: tenant.clone(),
            rx,
            taken: false,
        }
    }

    /// About how long this process's workers take to run `attempts` more
    /// attempts of `tenant`, from what its attempts have taken so far, at
    /// most `parallel` at once.
    pub(crate) fn estimate(
        &self,
        tenant: &TenantId,
        attempts: u64,
        parallel: Option<u64>,
    ) -> Duration {
        let st = self.lock();
        let each = st
            .estimates
            .peek(tenant)
            .copied()
            .unwrap_or(st.typical)
            .max(0.0);
        let parallel = parallel.map_or(self.count, |p| (p as usize).clamp(1, self.count));
        Duration::from_secs_f64((each * attempts as f64 / parallel as f64).min(1e9))
    }

    /// How many tenants have attempts running or waiting (the state's
    /// bound).
    pub(crate) fn lanes(&self) -> usize {
        self.lock().lanes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::new_unchecked(s)
    }

    /// Runs `n` attempts one after another on one worker, each tenant
    /// always having one more waiting and each attempt taking its tenant's
    /// time; returns the tenants in the order they got the worker.
    fn turns(tenants: &[(&str, u32, Duration)], n: usize) -> Vec<String> {
        let workers = Arc::new(Workers::new(1));
        let ask = |i: usize| {
            let (t, w, _) = tenants[i];
            workers.request(&tenant(t), w, false)
        };
        let mut waiting: Vec<Request> = (0..tenants.len()).map(ask).collect();
        let mut order = Vec::new();
        for _ in 0..n {
            let (i, charged) = waiting
                .iter_mut()
                .enumerate()
                .find_map(|(i, r)| r.try_granted().map(|c| (i, c)))
                .expect("one request holds the worker");
            let granted = std::mem::replace(&mut waiting[i], ask(i));
            let mut slot = granted.slot(charged);
            order.push(tenants[i].0.to_owned());
            // The attempt took its tenant's time.
            slot.started -= tenants[i].2;
            drop(slot);
        }
        order
    }

    #[test]
    fn worker_time_is_shared_by_weight_and_measured_time() {
        let ms = Duration::from_millis;
        // Equal weights, equal times: turns alternate.
        let order = turns(&[("ten_a", 1, ms(50)), ("ten_b", 1, ms(50))], 40);
        let a = order.iter().filter(|t| *t == "ten_a").count();
        assert!((19..=21).contains(&a), "a got {a} of 40: {order:?}");
        // Weights 3:1 give 3:1 turns.
        let order = turns(&[("ten_a", 3, ms(50)), ("ten_b", 1, ms(50))], 80);
        let a = order.iter().filter(|t| *t == "ten_a").count();
        assert!(
            (57..=63).contains(&a),
            "a got {a} of 80 at weight 3:1: {order:?}"
        );
        // A tenant of 200 ms steps gets about the worker time of one of
        // 20 ms steps, not the same number of turns.
        let order = turns(&[("ten_a", 1, ms(200)), ("ten_b", 1, ms(20))], 110);
        let a = order.iter().filter(|t| *t == "ten_a").count();
        let b = order.len() - a;
        assert!(
            b >= 6 * a,
            "the slow tenant got {a} turns, the fast one {b}: {order:?}"
        );
    }

    #[tokio::test]
    async fn a_newcomer_goes_next_and_sync_attempts_go_first() {
        let workers = Arc::new(Workers::new(1));
        let a = tenant("ten_a");
        let b = tenant("ten_b");
        let mut held = workers.acquire(&a, 1, false).await;
        held.started -= Duration::from_millis(50);
        // Tenant a queues 100 more; then b asks for one.
        let mut queued = Vec::new();
        for _ in 0..100 {
            let (w, a) = (workers.clone(), a.clone());
            queued.push(tokio::spawn(async move { w.acquire(&a, 1, false).await }));
        }
        tokio::task::yield_now().await;
        let (w, b2) = (workers.clone(), b.clone());
        let newcomer = tokio::spawn(async move { w.acquire(&b2, 1, false).await });
        tokio::task::yield_now().await;
        drop(held);
        let slot = tokio::time::timeout(Duration::from_secs(5), newcomer)
            .await
            .expect("b got the next worker")
            .unwrap();
        let mut slot = slot;
        slot.started -= Duration::from_millis(50);
        assert!(
            queued.iter().all(|h| !h.is_finished()),
            "an attempt of a went before b's"
        );
        // Within a tenant, a sync attempt passes the waiting ones.
        let (w, a2) = (workers.clone(), a.clone());
        let sync = tokio::spawn(async move { w.acquire(&a2, 1, true).await });
        tokio::task::yield_now().await;
        drop(slot);
        let slot = tokio::time::timeout(Duration::from_secs(5), sync)
            .await
            .expect("the sync attempt got the next worker")
            .unwrap();
        assert!(queued.iter().all(|h| !h.is_finished()));
        drop(slot);
        for h in queued {
            drop(h.await.unwrap());
        }
        assert_eq!(workers.lanes(), 0, "idle tenants keep no state");
    }

    #[tokio::test]
    async fn a_request_given_up_is_skipped() {
        let workers = Arc::new(Workers::new(1));
        let a = tenant("ten_a");
        let held = workers.acquire(&a, 1, false).await;
        let (w, a2) = (workers.clone(), a.clone());
        let abandoned = tokio::spawn(async move { w.acquire(&a2, 1, false).await });
        tokio::task::yield_now().await;
        abandoned.abort();
        let _ = abandoned.await;
        let (w, a3) = (workers.clone(), a.clone());
        let next = tokio::spawn(async move { w.acquire(&a3, 1, false).await });
        tokio::task::yield_now().await;
        drop(held);
        let slot = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the worker went past the abandoned request")
            .unwrap();
        drop(slot);
        assert_eq!(workers.lanes(), 0);
        assert_eq!(workers.lock().free, 1);
    }

    #[tokio::test]
    async fn a_grant_given_up_goes_to_the_next() {
        let workers = Arc::new(Workers::new(1));
        let a = tenant("ten_a");
        let held = workers.acquire(&a, 1, false).await;
        let first = workers.request(&a, 1, false);
        let second = workers.request(&a, 1, false);
        // The worker goes to the first request (FIFO within a tenant),
        // whose caller gives up before taking it: it passes to the next.
        drop(held);
        drop(first);
        let slot = tokio::time::timeout(Duration::from_secs(5), second.granted())
            .await
            .expect("the worker given up went to the next request");
        drop(slot);
        assert_eq!(workers.lanes(), 0);
        assert_eq!(workers.lock().free, 1);
    }

    #[tokio::test]
    async fn estimates_are_kept_for_the_most_recently_measured_tenants() {
        let workers = Arc::new(Workers::new(1));
        let measure = |name: String, took: Duration| {
            let workers = workers.clone();
            async move {
                let mut slot = workers.acquire(&tenant(&name), 1, false).await;
                slot.started -= took;
            }
        };
        let kept = tenant("ten_kept");
        measure("ten_kept".into(), Duration::from_secs(7)).await;
        for i in 0..MAX_ESTIMATES - 1 {
            measure(format!("ten_first{i}"), Duration::ZERO).await;
        }
        // Measured again, it is the most recent of a full map.
        measure("ten_kept".into(), Duration::from_secs(7)).await;
        for i in 0..MAX_ESTIMATES / 2 {
            measure(format!("ten_later{i}"), Duration::ZERO).await;
        }
        let st = workers.lock();
        assert_eq!(st.estimates.len(), MAX_ESTIMATES, "the bound holds, full");
        assert!(
            st.estimates.peek(&kept).is_some_and(|e| *e > 6.0),
            "a tenant measured recently keeps its estimate"
        );
        assert!(
            st.estimates.peek(&tenant("ten_first0")).is_none(),
            "the least recently measured went first"
        );
        assert!(
            st.estimates
                .peek(&tenant(&format!("ten_first{}", MAX_ESTIMATES - 2)))
                .is_some()
        );
        assert_eq!(st.lanes.len(), 0);
    }
}

//! Submission rates: a GCRA bucket per tenant (its `submissions_per_second`
//! and `submissions_burst` quota) and one for the whole server
//! (`global-submissions-per-second`), by governor. A submission is admitted
//! by its tenant's bucket first and then by the server's, so a tenant over
//! its own limit spends none of the server's.
//!
//! The buckets live in this process: on several nodes each one enforces
//! the limits for the requests it serves.
//!
//! Answers carry the IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers): per policy its quota `q` in a
//! window `w` (seconds a spent bucket takes to fill), what remains `r`
//! and when the bucket is full again `t`. A refusal says `Retry-After`:
//! the seconds until the submission would be admitted.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use hashlink::LruCache;

use super::auth::{Caller, Principal};
use super::{ApiError, AppState};
use crate::model::TenantId;

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A sustained rate with its burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Per second.
    pub per_second: f64,
    /// How many may come at once.
    pub burst: u32,
}

impl Rate {
    /// The rate of `per_second` (none without one) and `burst` (default:
    /// one second's worth, at least 1).
    pub fn new(per_second: Option<f64>, burst: Option<u32>) -> Option<Rate> {
        let per_second = per_second.filter(|r| r.is_finite() && *r > 0.0)?.clamp(
            crate::model::quotas::MIN_RATE,
            crate::model::quotas::MAX_RATE,
        );
        let burst = burst
            .unwrap_or_else(|| per_second.ceil().min(f64::from(u32::MAX)) as u32)
            .max(1);
        Some(Rate { per_second, burst })
    }

    fn quota(self) -> Quota {
        let period = Duration::from_secs_f64(1.0 / self.per_second).max(Duration::from_nanos(1));
        Quota::with_period(period)
            .expect("a period above zero")
            .allow_burst(NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN))
    }

    /// Seconds a spent bucket takes to fill again.
    fn window(self) -> u64 {
        seconds(f64::from(self.burst) / self.per_second)
    }
}

/// Whole seconds, rounded up, at least 1.
fn seconds(s: f64) -> u64 {
    (s.ceil() as u64).max(1)
}

struct Bucket {
    rate: Rate,
    limiter: Limiter,
}

impl Bucket {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            limiter: RateLimiter::direct(rate.quota())
                .with_middleware::<StateInformationMiddleware>(),
        }
    }
}

/// One policy's part of an answer.
#[derive(Debug)]
struct Verdict {
    name: &'static str,
    rate: Rate,
    remaining: u32,
    /// Seconds until admitted (a refusal) or until the bucket is full.
    reset: u64,
    /// A refusal that waiting does not cure: more at once than the burst.
    never: bool,
}

/// The most tenants whose submission bucket a process keeps. Past it the
/// bucket used longest ago is dropped: that tenant's next submission
/// starts from a full bucket, as it would after any idle time long enough
/// to refill it, which the least recently used of 100,000 active tenants
/// has almost always had.
pub(crate) const MAX_BUCKETS: usize = 100_000;

/// The rate limits of a server.
pub struct RateLimits {
    /// At most [`MAX_BUCKETS`], least recently used dropped first.
    tenants: Mutex<LruCache<TenantId, Arc<Bucket>>>,
    global: Option<Bucket>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

impl RateLimits {
    /// Limits with the server's own rate, if any.
    pub fn new(global: Option<Rate>) -> Self {
        Self::with_bound(global, MAX_BUCKETS)
    }

    fn with_bound(global: Option<Rate>, max_buckets: usize) -> Self {
        Self {
            tenants: Mutex::new(LruCache::new(max_buckets)),
            global: global.map(Bucket::new),
            clock: DefaultClock::default(),
        }
    }

    /// The tenant's bucket for `rate`, made anew when the rate changed.
    fn bucket(&self, tenant: &TenantId, rate: Rate) -> Arc<Bucket> {
        let mut buckets = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get(tenant)
            && b.rate == rate
        {
            return b.clone();
        }
        let bucket = Arc::new(Bucket::new(rate));
        buckets.insert(tenant.clone(), bucket.clone());
        bucket
    }

    fn check(
        &self,
        name: &'static str,
        bucket: &Bucket,
        n: NonZeroU32,
    ) -> Result<Verdict, Verdict> {
        let rate = bucket.rate;
        let refused = |reset, never| Verdict {
            name,
            rate,
            remaining: 0,
            reset,
            never,
        };
        match bucket.limiter.check_n(n) {
            Ok(Ok(state)) => {
                let remaining = state.remaining_burst_capacity();
                let missing = f64::from(rate.burst.saturating_sub(remaining));
                Ok(Verdict {
                    name,
                    rate,
                    remaining,
                    reset: if missing == 0.0 {
                        0
                    } else {
                        seconds(missing / rate.per_second)
                    },
                    never: false,
                })
            }
            Ok(Err(not_until)) => Err(refused(
                seconds(not_until.wait_time_from(self.clock.now()).as_secs_f64()),
                false,
            )),
            Err(_) => Err(refused(rate.window(), true)),
        }
    }

    /// Admits `n` submissions of `tenant` at once under its `rate` and
    /// the server's, or says which refused them and for how long.
    fn admit(
        &self,
        tenant: &TenantId,
        rate: Option<Rate>,
        n: NonZeroU32,
    ) -> Result<Vec<Verdict>, (Verdict, Vec<Verdict>)> {
        let mut passed = Vec::new();
        if let Some(rate) = rate {
            let bucket = self.bucket(tenant, rate);
            match self.check("tenant", &bucket, n) {
                Ok(v) => passed.push(v),
                Err(v) => return Err((v, passed)),
            }
        }
        if let Some(global) = &self.global {
            match self.check("server", global, n) {
                Ok(v) => passed.push(v),
                Err(v) => return Err((v, passed)),
            }
        }
        Ok(passed)
    }
}

fn policy(v: &Verdict) -> String {
    format!("\"{}\";q={};w={}", v.name, v.rate.burst, v.rate.window())
}

fn state(v: &Verdict) -> String {
    format!("\"{}\";r={};t={}", v.name, v.remaining, v.reset)
}

fn fields(verdicts: &[&Verdict]) -> Vec<(HeaderName, HeaderValue)> {
    if verdicts.is_empty() {
        return Vec::new();
    }
    let join = |f: fn(&Verdict) -> String| {
        let text: Vec<String> = verdicts.iter().map(|v| f(v)).collect();
        HeaderValue::from_str(&text.join(", ")).expect("ASCII")
    };
    vec![(POLICY, join(policy)), (RATELIMIT, join(state))]
}

/// Admits a submission under the tenant's backlog limit `max` (its
/// `max_queued_executions`), with the `RateLimit-Policy` and `RateLimit`
/// fields to add, or refuses it with 429 and a `Retry-After` of about how
/// long the tenant's workers take to bring the backlog under the limit.
async fn backlog(
    state: &AppState,
    tenant: &TenantId,
    max: u64,
    n: u64,
) -> Result<Result<(HeaderValue, HeaderValue), Response>, ApiError> {
    if n > max {
        return Err(ApiError::at(
            "the batch is larger than this tenant's backlog",
            "$.inputs",
            format!(
                "{n} executions at once can never be queued: `max_queued_executions` is {max}; \
                 send at most {max} per batch"
            ),
        ));
    }
    let queued = state.store.queued_count(tenant).await?;
    let policy = HeaderValue::from_str(&format!("\"backlog\";q={max}")).expect("ASCII");
    if queued + n <= max {
        let left = max - queued - n;
        let value = HeaderValue::from_str(&format!("\"backlog\";r={left};t=0")).expect("ASCII");
        return Ok(Ok((policy, value)));
    }
    let over = queued + n - max;
    let wait = seconds(state.engine.backlog_wait(tenant, over).await.as_secs_f64());
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "over this tenant's backlog: {queued} executions are queued, {n} more \
             were asked for and `max_queued_executions` is {max}; retry in {wait} s"
        ),
    )
    .into_response();
    let headers = resp.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(wait));
    headers.insert(POLICY, policy);
    headers.insert(
        RATELIMIT,
        HeaderValue::from_str(&format!("\"backlog\";r=0;t={wait}")).expect("ASCII"),
    );
    Ok(Err(resp))
}

/// The middleware on submission routes: admits the request under its
/// tenant's rate and the server's and its backlog limit, or answers 429.
pub async fn submissions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    req: Request,
    next: Next,
) -> Response {
    match admit(&state, &caller, 1).await {
        Ok(fields) => {
            let mut resp = next.run(req).await;
            fields.add_to(&mut resp);
            resp
        }
        Err(refusal) => refusal,
    }
}

/// What an admitted submission's answer carries.
#[derive(Debug, Default)]
pub struct Admitted(Vec<(HeaderName, HeaderValue)>);

impl Admitted {
    /// Adds the `RateLimit-Policy` and `RateLimit` fields to an answer.
    pub fn add_to(self, resp: &mut Response) {
        // The backlog's policy is one more value of the rate's fields.
        let mut seen: Vec<HeaderName> = Vec::new();
        for (name, value) in self.0 {
            if seen.contains(&name) {
                resp.headers_mut().append(name, value);
            } else {
                resp.headers_mut().insert(name.clone(), value);
                seen.push(name);
            }
        }
    }
}

/// Admits `n` submissions of the caller's tenant at once (a run is one, a
/// batch one per input) under its rate, the server's, and its backlog
/// limit; or the answer that refuses them: 429 with `Retry-After` when
/// waiting helps, 422 at `$.inputs` when more were asked for at once than
/// the burst or the backlog can ever take.
pub async fn admit(state: &AppState, caller: &Principal, n: u32) -> Result<Admitted, Response> {
    let Some(tenant) = caller.tenant.clone() else {
        // Not a tenant: the handler refuses it.
        return Ok(Admitted::default());
    };
    let quotas = state.quotas(caller);
    let rate = Rate::new(quotas.submissions_per_second, quotas.submissions_burst);
    let count = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    match state.rates.admit(&tenant, rate, count) {
        Ok(passed) => {
            let mut fields = fields(&passed.iter().collect::<Vec<_>>());
            if let Some(max) = quotas.max_queued_executions {
                match backlog(state, &tenant, max, u64::from(n)).await {
                    Ok(Ok((policy, value))) => {
                        fields.push((POLICY, policy));
                        fields.push((RATELIMIT, value));
                    }
                    Ok(Err(refusal)) => return Err(refusal),
                    Err(e) => return Err(e.into_response()),
                }
            }
            Ok(Admitted(fields))
        }
        Err((refused, passed)) => {
            let which = match refused.name {
                "tenant" => format!(
                    "this tenant's submission rate ({} per second, burst {}; quota `submissions_per_second`)",
                    refused.rate.per_second, refused.rate.burst
                ),
                _ => format!(
                    "the server's submission rate ({} per second, burst {}; config `global-submissions-per-second`)",
                    refused.rate.per_second, refused.rate.burst
                ),
            };
            if refused.never {
                return Err(ApiError::at(
                    "the batch is larger than the submission burst",
                    "$.inputs",
                    format!(
                        "{n} executions at once are more than the burst of {which}; send at \
                         most {} per batch",
                        refused.rate.burst
                    ),
                )
                .into_response());
            }
            let mut all: Vec<&Verdict> = passed.iter().collect();
            all.push(&refused);
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("over {which}; retry in {} s", refused.reset),
            )
            .into_response();
            let headers = resp.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(refused.reset));
            for (name, value) in fields(&all) {
                headers.insert(name, value);
            }
            Err(resp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_within_their_bound_and_an_active_tenant_keeps_its_own() {
        let limits = RateLimits::with_bound(None, 100);
        // One per hour, a burst of 2.
        let rate = Rate::new(Some(1.0 / 3600.0), Some(2)).unwrap();
        let busy = TenantId::new_unchecked("ten_busy");
        assert!(limits.admit(&busy, Some(rate), NonZeroU32::MIN).is_ok());
        assert!(limits.admit(&busy, Some(rate), NonZeroU32::MIN).is_ok());
        for round in 0..5 {
            // 60 other tenants submit between two of the busy one's: more
            // than the bound over the rounds, never more than it at once.
            for i in 0..60 {
                let other = TenantId::new_unchecked(format!("ten_{round}_{i}"));
                assert!(limits.admit(&other, Some(rate), NonZeroU32::MIN).is_ok());
            }
            let (refused, _) = limits
                .admit(&busy, Some(rate), NonZeroU32::MIN)
                .expect_err("the busy tenant's bucket is still empty");
            assert_eq!(refused.name, "tenant");
            assert!(refused.reset > 3000, "{}", refused.reset);
        }
        let buckets = limits.tenants.lock().unwrap();
        assert_eq!(buckets.len(), 100, "the bound holds, full");
        assert!(buckets.peek(&busy).is_some());
        assert!(
            buckets.peek(&TenantId::new_unchecked("ten_0_0")).is_none(),
            "the least recently used went first"
        );
        drop(buckets);
        assert_eq!(
            RateLimits::new(None).tenants.lock().unwrap().capacity(),
            MAX_BUCKETS
        );
    }

    #[test]
    fn a_batch_spends_one_cell_per_submission_and_more_than_the_burst_never_passes() {
        let limits = RateLimits::with_bound(None, 10);
        // One per hour, a burst of 5.
        let rate = Rate::new(Some(1.0 / 3600.0), Some(5)).unwrap();
        let tenant = TenantId::new_unchecked("ten_batch");
        let n = |n| NonZeroU32::new(n).unwrap();
        let (refused, _) = limits.admit(&tenant, Some(rate), n(6)).unwrap_err();
        assert!(refused.never, "six at once never fit a burst of five");
        let passed = limits.admit(&tenant, Some(rate), n(4)).unwrap();
        assert_eq!(passed[0].remaining, 1, "the refusal spent nothing");
        let (refused, _) = limits.admit(&tenant, Some(rate), n(2)).unwrap_err();
        assert!(!refused.never, "two fit once the bucket refills");
        assert!(refused.reset > 3000, "{}", refused.reset);
        assert!(limits.admit(&tenant, Some(rate), n(1)).is_ok());
    }
}

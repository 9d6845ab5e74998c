//! Per-node policies: retry, timeout, on-error, concurrency key.
//!
//! An [`Engine`](crate::Engine) holds defaults; a flow can override them per
//! node with [`FlowBuilder::policy`](crate::FlowBuilder::policy).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::NodeError;

/// What happens when a node fails after its last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail the whole execution and cancel every running node (the default).
    #[default]
    Fail,
    /// Go on: the node's regular outputs stay empty (their consumers are
    /// skipped) and its `error` port carries the failure.
    Continue,
    /// Go on as if the node were skipped: all its outputs stay empty.
    Skip,
}

/// How a failed attempt is retried: exponential backoff with jitter.
///
/// The delay before attempt `n + 1` is `initial_backoff * multiplier^(n - 1)`,
/// capped at `max_backoff`, then reduced by a random fraction up to `jitter`
/// (0 = no jitter, 1 = anywhere between zero and the full delay). A node's
/// [`NodeError::retry_after`] raises the delay to at least that value.
/// Only [retryable](NodeError::is_retryable) errors are retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts in total, including the first. 1 means no retry.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    #[serde(with = "duration_ms")]
    pub initial_backoff: Duration,
    /// Upper bound of any delay.
    #[serde(with = "duration_ms")]
    pub max_backoff: Duration,
    /// Growth factor between attempts.
    pub multiplier: f64,
    /// Fraction of each delay that is randomized, in `0.0..=1.0`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::none()
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }

    /// Up to `max_attempts` attempts with the default backoff (100 ms, doubling, 20 % jitter).
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            ..RetryPolicy::none()
        }
    }

    /// Sets the delay before the second attempt.
    #[must_use]
    pub fn backoff(mut self, initial: Duration) -> Self {
        self.initial_backoff = initial;
        self
    }

    /// Sets the cap of every delay.
    #[must_use]
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// Sets the growth factor.
    #[must_use]
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the jitter fraction (clamped to `0.0..=1.0`).
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before attempt `failed_attempt + 1`, before jitter.
    pub fn base_delay(&self, failed_attempt: u32) -> Duration {
        let exp = failed_attempt.saturating_sub(1).min(64) as i32;
        let factor = if self.multiplier.is_finite() && self.multiplier > 0.0 {
            self.multiplier.powi(exp)
        } else {
            1.0
        };
        let secs = self.initial_backoff.as_secs_f64() * factor;
        let max = self.max_backoff.as_secs_f64();
        Duration::try_from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
            .unwrap_or(self.max_backoff)
    }

    /// The delay before attempt `failed_attempt + 1`, with jitter drawn from
    /// `random` (a number in `0.0..1.0`) and the error's `retry_after` floor.
    pub fn delay(&self, failed_attempt: u32, error: &NodeError, random: f64) -> Duration {
        let base = self.base_delay(failed_attempt);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = base.mul_f64(1.0 - jitter * random.clamp(0.0, 1.0));
        match error.retry_after() {
            Some(floor) => jittered.max(floor),
            None => jittered,
        }
    }
}

/// Policies of one node. Unset fields fall back to the engine's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodePolicy {
    /// Retry policy.
    pub retry: Option<RetryPolicy>,
    /// Time limit of each attempt.
    #[serde(with = "opt_duration_ms")]
    pub timeout: Option<Duration>,
    /// What a failure does to the execution.
    pub on_error: Option<OnError>,
    /// The key whose engine-wide concurrency limit applies to this node;
    /// defaults to the node's type name.
    pub concurrency_key: Option<String>,
    /// At most so many attempts per period, across every node (of every
    /// execution of the engine) with the same key.
    pub rate_limit: Option<RateLimit>,
    /// Fail fast after repeated failures, across every node with the same key.
    pub circuit_breaker: Option<CircuitBreaker>,
}

impl NodePolicy {
    /// Sets the retry policy.
    pub fn retry(&mut self, retry: RetryPolicy) -> &mut Self {
        self.retry = Some(retry);
        self
    }

    /// Sets the time limit of each attempt.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the on-error behaviour.
    pub fn on_error(&mut self, on_error: OnError) -> &mut Self {
        self.on_error = Some(on_error);
        self
    }

    /// Sets the concurrency key.
    pub fn concurrency_key(&mut self, key: impl Into<String>) -> &mut Self {
        self.concurrency_key = Some(key.into());
        self
    }

    /// Sets the rate limit.
    pub fn rate_limit(&mut self, limit: RateLimit) -> &mut Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Sets the circuit breaker.
    pub fn circuit_breaker(&mut self, breaker: CircuitBreaker) -> &mut Self {
        self.circuit_breaker = Some(breaker);
        self
    }
}

/// At most `limit` attempts per `per`, shared by every node with the same
/// key in every execution of an engine: a token bucket that holds `limit`
/// tokens and refills evenly over `per`, so bursts up to `limit` pass at
/// once and the rest wait their turn (a waiting attempt can be cancelled,
/// and does not count against the node's timeout).
///
/// A rate limit is a policy, not a node, so it composes with any node, with
/// retries (each attempt takes a token) and with concurrency limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Attempts per period.
    pub limit: u32,
    /// The period.
    #[serde(with = "duration_ms")]
    pub per: Duration,
    /// The bucket's key; by default the node's type name, so all nodes of a
    /// type share one budget (for one rate-limited API, say).
    pub key: Option<String>,
}

impl RateLimit {
    /// `limit` attempts per `per` (a limit of 0 counts as 1).
    pub fn new(limit: u32, per: Duration) -> Self {
        RateLimit {
            limit: limit.max(1),
            per,
            key: None,
        }
    }

    /// `limit` attempts per second.
    pub fn per_second(limit: u32) -> Self {
        RateLimit::new(limit, Duration::from_secs(1))
    }

    /// `limit` attempts per minute.
    pub fn per_minute(limit: u32) -> Self {
        RateLimit::new(limit, Duration::from_secs(60))
    }

    /// Shares the bucket of `key` instead of the type name's.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Parses `20/min`, `5/s`, `100/h`, `10/250ms` or `3/2s`.
    ///
    /// # Errors
    /// A message saying what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{text}` is not a rate; write it like `20/min`, `5/s`, `100/h` or `10/250ms`")
        };
        let (count, period) = text.split_once('/').ok_or_else(bad)?;
        let limit: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        let per = match period {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => crate::document::DurationText::parse(other)
                .map(|d| d.0)
                .map_err(|_| bad())?,
        };
        if limit == 0 || per.is_zero() {
            return Err(format!(
                "`{text}`: the limit and the period must be above zero"
            ));
        }
        Ok(RateLimit::new(limit, per))
    }
}

/// Stops calling something that keeps failing: after `failures`
/// consecutive failed attempts of nodes with the same key (in any execution
/// of the engine) the breaker opens, and attempts fail at once, without
/// running, with a retryable error whose retry-after is the time left of
/// `cooldown`. Then one attempt is let through: its success closes the
/// breaker, its failure opens it again for another `cooldown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the breaker (0 counts as 1).
    pub failures: u32,
    /// How long it stays open before a trial attempt.
    #[serde(with = "duration_ms")]
    pub cooldown: Duration,
    /// The breaker's key; by default the node's type name.
    pub key: Option<String>,
}

impl CircuitBreaker {
    /// Opens after `failures` consecutive failures, for `cooldown`.
    pub fn new(failures: u32, cooldown: Duration) -> Self {
        CircuitBreaker {
            failures: failures.max(1),
            cooldown,
            key: None,
        }
    }

    /// Shares the breaker of `key` instead of the type name's.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u64::MAX as u128) as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis().min(u64::MAX as u128) as u64)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let p = RetryPolicy::attempts(10)
            .backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(1000))
            .jitter(0.0);
        let delays: Vec<_> = (1..=6).map(|n| p.base_delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_retry_after_is_a_floor() {
        let p = RetryPolicy::attempts(3)
            .backoff(Duration::from_millis(1000))
            .jitter(0.5);
        let e = NodeError::retryable("x");
        assert_eq!(p.delay(1, &e, 0.0), Duration::from_millis(1000));
        assert_eq!(p.delay(1, &e, 1.0), Duration::from_millis(500));
        let e = e.with_retry_after(Duration::from_secs(5));
        assert_eq!(p.delay(1, &e, 0.5), Duration::from_secs(5));
    }

    #[test]
    fn rates_parse() {
        let r = RateLimit::parse("20/min").unwrap();
        assert_eq!((r.limit, r.per), (20, Duration::from_secs(60)));
        let r = RateLimit::parse("10 / 250ms").unwrap();
        assert_eq!((r.limit, r.per), (10, Duration::from_millis(250)));
        assert_eq!(RateLimit::parse("5/s").unwrap().per, Duration::from_secs(1));
        assert!(RateLimit::parse("fast").unwrap_err().contains("not a rate"));
        assert!(RateLimit::parse("0/s").unwrap_err().contains("above zero"));
        assert!(RateLimit::parse("3/fortnight").is_err());
    }

    #[test]
    fn nonsense_parameters_do_not_panic() {
        let p = RetryPolicy::attempts(3)
            .multiplier(f64::NAN)
            .jitter(f64::INFINITY);
        let e = NodeError::retryable("x");
        assert_eq!(p.delay(3, &e, 0.7), p.initial_backoff);
        let p = RetryPolicy::attempts(100).multiplier(1e300);
        assert_eq!(p.base_delay(90), p.max_backoff);
    }
}

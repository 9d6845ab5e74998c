//! The state behind rate limits and circuit breakers: per engine, per key,
//! shared by every execution.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::error::NodeError;
use crate::policy::{CircuitBreaker, RateLimit};

/// The rate buckets and breakers of one engine, made on first use of a key.
#[derive(Debug, Default)]
pub(crate) struct Guards {
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
    breakers: Mutex<HashMap<String, Arc<Breaker>>>,
}

impl Guards {
    /// The bucket of `key`, made for `limit` if it does not exist yet (the
    /// first node to use a key sets its rate).
    pub(crate) fn bucket(&self, key: &str, limit: &RateLimit) -> Arc<Bucket> {
        let mut buckets = self.buckets.lock();
        if let Some(bucket) = buckets.get(key) {
            return bucket.clone();
        }
        let bucket = Arc::new(Bucket::new(limit));
        buckets.insert(key.to_owned(), bucket.clone());
        bucket
    }

    /// The breaker of `key`, made for `policy` if it does not exist yet.
    pub(crate) fn breaker(&self, key: &str, policy: &CircuitBreaker) -> Arc<Breaker> {
        let mut breakers = self.breakers.lock();
        if let Some(breaker) = breakers.get(key) {
            return breaker.clone();
        }
        let breaker = Arc::new(Breaker::new(key, policy));
        breakers.insert(key.to_owned(), breaker.clone());
        breaker
    }
}

/// A token bucket: `limit` tokens, refilled evenly over `per`.
#[derive(Debug)]
pub(crate) struct Bucket {
    capacity: f64,
    /// Tokens per second.
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(limit: &RateLimit) -> Self {
        let capacity = f64::from(limit.limit.max(1));
        let per = limit.per.as_secs_f64().max(1e-9);
        Bucket {
            capacity,
            rate: capacity / per,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Takes a token, or says how long until one is there.
    pub(crate) fn try_take(&self) -> Result<(), Duration> {
        let mut state = self.state.lock();
        let now = Instant::now();
        let (tokens, at) = *state;
        let tokens = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate)
            .min(self.capacity);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            Ok(())
        } else {
            *state = (tokens, now);
            let wait = (1.0 - tokens) / self.rate;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(1)))
        }
    }
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Counting consecutive failures.
    Closed(u32),
    /// Refusing attempts until then.
    Open(Instant),
    /// One trial attempt is running.
    Trial,
}

/// One circuit breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    key: String,
    failures: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

/// How an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// As usual.
    Normal,
    /// As the one trial after a cool-down: its result decides.
    Trial,
}

impl Breaker {
    fn new(key: &str, policy: &CircuitBreaker) -> Self {
        Breaker {
            key: key.to_owned(),
            failures: policy.failures.max(1),
            cooldown: policy.cooldown,
            state: Mutex::new(State::Closed(0)),
        }
    }

    /// Lets an attempt through, or refuses it with a retryable error whose
    /// retry-after is the time left before a trial.
    pub(crate) fn admit(&self) -> Result<Admission, NodeError> {
        let mut state = self.state.lock();
        let now = Instant::now();
        match *state {
            State::Closed(_) => Ok(Admission::Normal),
            State::Open(until) if now >= until => {
                *state = State::Trial;
                Ok(Admission::Trial)
            }
            State::Open(until) => {
                let left = until - now;
                Err(NodeError::retryable(format!(
                    "circuit `{}` is open after {} consecutive failures; next trial in {left:?}",
                    self.key, self.failures
                ))
                .with_retry_after(left))
            }
            State::Trial => Err(NodeError::retryable(format!(
                "circuit `{}` is half-open and a trial attempt is running",
                self.key
            ))
            .with_retry_after(self.cooldown.min(Duration::from_secs(1)))),
        }
    }

    /// Records how an admitted attempt ended.
    pub(crate) fn record(&self, admission: Admission, succeeded: bool) {
        let mut state = self.state.lock();
        *state = match (admission, succeeded, *state) {
            (_, true, _) => State::Closed(0),
            (Admission::Trial, false, _) => State::Open(Instant::now() + self.cooldown),
            (Admission::Normal, false, State::Closed(n)) if n + 1 >= self.failures => {
                State::Open(Instant::now() + self.cooldown)
            }
            (Admission::Normal, false, State::Closed(n)) => State::Closed(n + 1),
            // Another attempt already opened it, or a trial is deciding.
            (Admission::Normal, false, other) => other,
        };
    }

    /// An admitted trial that ended without a result (cancelled): let the
    /// next attempt try.
    pub(crate) fn abandon(&self, admission: Admission) {
        if admission == Admission::Trial {
            let mut state = self.state.lock();
            if *state == State::Trial {
                *state = State::Open(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_lets_a_burst_through_then_paces() {
        let bucket = Bucket::new(&RateLimit::new(2, Duration::from_secs(1)));
        assert!(bucket.try_take().is_ok());
        assert!(bucket.try_take().is_ok());
        let wait = bucket.try_take().unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        tokio::time::advance(wait).await;
        assert!(bucket.try_take().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_breaker_opens_fails_fast_then_tries_once() {
        let breaker = Breaker::new("api", &CircuitBreaker::new(2, Duration::from_secs(10)));
        for _ in 0..2 {
            let a = breaker.admit().unwrap();
            breaker.record(a, false);
        }
        let err = breaker.admit().unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
        assert!(
            err.message().contains("circuit `api` is open"),
            "{}",
            err.message()
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        let trial = breaker.admit().unwrap();
        assert_eq!(trial, Admission::Trial);
        // While the trial runs, others are refused.
        assert!(breaker.admit().is_err());
        breaker.record(trial, false);
        assert!(breaker.admit().is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
        let trial = breaker.admit().unwrap();
        breaker.record(trial, true);
        assert_eq!(breaker.admit().unwrap(), Admission::Normal);
    }
}

//! The circuit breaker in front of one webhook provider: after `threshold` failures in a row it
//! fails fast for `cooldown`, then lets a single trial call decide whether to close again.
//!
//! The states and every transition:
//!
//! ```text
//! Closed{failures}           call succeeds                     -> Closed{0}
//! Closed{failures}           call fails, threshold reached     -> Open{now + cooldown}
//! Open{until}                a call before `until`             -> fails fast
//! Open{until}                a call after `until`              -> HalfOpen{trial in flight}, it is the trial
//! HalfOpen{trial in flight}  any other call                    -> fails fast
//! HalfOpen{trial in flight}  trial succeeds                    -> Closed{0}
//! HalfOpen{trial in flight}  trial fails                       -> Open{now + cooldown}
//! HalfOpen{trial in flight}  trial dropped without an outcome  -> HalfOpen{no trial}
//! HalfOpen{no trial}         a call                            -> HalfOpen{trial in flight}, it is the trial
//! ```
//!
//! Admission hands out a [`Permit`]. Its outcome is recorded by [`Permit::record`]; a permit
//! dropped without an outcome — the client hung up, a `first_success` group let another member
//! win, a deadline elsewhere fired — says nothing about the provider's health. A dropped trial
//! therefore gives the half-open slot back: the next call becomes the trial at once, rather than
//! waiting out another cooldown for a failure that never happened. Without this, a cancelled
//! trial would leave the provider failing fast until a restart.
//!
//! Outcomes of ordinary calls count only against the closed period they were admitted in: calls
//! still in flight when the breaker opened cannot reopen or close it later; the trial decides.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::IntGauge;

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls fail fast until `until`.
    Open { until: Instant },
    /// The cooldown is over: one trial call decides. While it runs every other call fails fast.
    HalfOpen { trial_in_flight: bool },
}

/// The state, and which closed period it is (so late outcomes from an earlier one are ignored).
struct Inner {
    state: State,
    generation: u64,
}

/// What a permit was admitted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// The breaker is disabled (`threshold` 0): outcomes are not counted.
    Unguarded,
    /// An ordinary call in the closed period `generation`.
    Closed { generation: u64 },
    /// The one half-open trial.
    Trial,
    /// Already settled.
    Settled,
}

/// A consecutive-failure circuit breaker with an explicit half-open state.
pub(crate) struct Breaker {
    provider: String,
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
    /// `drawbridge_provider_circuit_open`: 1 while open or half-open.
    gauge: IntGauge,
}

/// Leave to make one provider call; see the module docs for what dropping it does.
#[must_use = "a permit dropped at once counts as a cancelled call"]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    admission: Admission,
}

// === impl Breaker ===

impl Breaker {
    /// A closed breaker for `provider` that opens after `threshold` failures in a row (0: never)
    /// and fails fast for `cooldown`; `gauge` is set to 1 while it is not closed.
    pub(crate) fn new(provider: &str, threshold: u32, cooldown: Duration, gauge: IntGauge) -> Self {
        gauge.set(0);
        Self {
            provider: provider.to_owned(),
            threshold,
            cooldown,
            inner: Mutex::new(Inner {
                state: State::Closed { failures: 0 },
                generation: 0,
            }),
            gauge,
        }
    }

    /// Runs `call` if the breaker admits it and records whether it succeeded; `None` when the
    /// breaker fails fast. Dropping the returned future at any point gives back what it holds.
    pub(crate) async fn call<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Option<Result<T, E>> {
        let permit = self.admit()?;
        let result = call.await;
        permit.record(result.is_ok());
        Some(result)
    }

    /// Leave to call the provider now, or `None` to fail fast.
    pub(crate) fn admit(&self) -> Option<Permit<'_>> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<Permit<'_>> {
        if self.threshold == 0 {
            return Some(self.permit(Admission::Unguarded));
        }
        let mut inner = self.lock();
        let admission = match inner.state {
            State::Closed { .. } => Admission::Closed {
                generation: inner.generation,
            },
            State::Open { until } if now < until => return None,
            State::Open { .. }
            | State::HalfOpen {
                trial_in_flight: false,
            } => {
                inner.state = State::HalfOpen {
                    trial_in_flight: true,
                };
                tracing::debug!(provider = %self.provider, "provider circuit half-open: trial call");
                Admission::Trial
            }
            State::HalfOpen {
                trial_in_flight: true,
            } => return None,
        };
        drop(inner);
        Some(self.permit(admission))
    }

    fn permit(&self, admission: Admission) -> Permit<'_> {
        Permit {
            breaker: self,
            admission,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a few words written whole; a panic elsewhere cannot leave it half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a permit's outcome: `Some(ok)` when the call finished, `None` when it was dropped.
    fn settle(&self, admission: Admission, outcome: Option<bool>, now: Instant) {
        let mut inner = self.lock();
        match (admission, inner.state, outcome) {
            (Admission::Unguarded | Admission::Settled, _, _) => {}
            (Admission::Closed { generation }, State::Closed { failures }, Some(ok))
                if generation == inner.generation =>
            {
                if ok {
                    inner.state = State::Closed { failures: 0 };
                } else if failures + 1 >= self.threshold {
                    inner.state = State::Open {
                        until: now + self.cooldown,
                    };
                    self.gauge.set(1);
                    tracing::warn!(provider = %self.provider, failures = failures + 1, "provider circuit opened");
                } else {
                    inner.state = State::Closed {
                        failures: failures + 1,
                    };
                }
            }
            // A dropped ordinary call says nothing; a late one from an earlier period is ignored.
            (Admission::Closed { .. }, _, _) => {}
            (
                Admission::Trial,
                State::HalfOpen {
                    trial_in_flight: true,
                },
                outcome,
            ) => match outcome {
                Some(true) => {
                    inner.state = State::Closed { failures: 0 };
                    inner.generation += 1;
                    self.gauge.set(0);
                    tracing::info!(provider = %self.provider, "provider circuit closed: trial call succeeded");
                }
                Some(false) => {
                    inner.state = State::Open {
                        until: now + self.cooldown,
                    };
                    tracing::warn!(provider = %self.provider, "provider circuit reopened: trial call failed");
                }
                None => {
                    inner.state = State::HalfOpen {
                        trial_in_flight: false,
                    };
                    tracing::debug!(provider = %self.provider, "trial call cancelled; the next call is the trial");
                }
            },
            // Only the trial leaves HalfOpen{trial in flight}, so a trial always finds it there.
            (Admission::Trial, _, _) => {}
        }
    }

    #[cfg(test)]
    fn state(&self) -> State {
        self.lock().state
    }
}

// === impl Permit ===

impl Permit<'_> {
    /// Records how the call went: `ok` is false for any failure to get an answer.
    pub(crate) fn record(mut self, ok: bool) {
        let admission = std::mem::replace(&mut self.admission, Admission::Settled);
        self.breaker.settle(admission, Some(ok), Instant::now());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let admission = std::mem::replace(&mut self.admission, Admission::Settled);
        self.breaker.settle(admission, None, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Waker};

    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(10);

    fn breaker(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker::new(
            "p",
            threshold,
            cooldown,
            IntGauge::new("circuit_open", "test").unwrap(),
        )
    }

    /// Fails `threshold` calls in a row; returns when it opened.
    fn open(b: &Breaker) -> Instant {
        for _ in 0..b.threshold {
            b.admit().expect("closed").record(false);
        }
        let State::Open { until } = b.state() else {
            panic!("not open: {:?}", b.state());
        };
        until - b.cooldown
    }

    /// A provider call under test: pending `left` more times (waking itself), then `outcome`.
    struct Steps {
        left: usize,
        outcome: Result<(), ()>,
    }

    impl Future for Steps {
        type Output = Result<(), ()>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            if self.left == 0 {
                return Poll::Ready(self.outcome);
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn closed_breaker_opens_only_after_threshold_failures_in_a_row() {
        let b = breaker(3, COOLDOWN);
        for _ in 0..2 {
            b.admit().unwrap().record(false);
        }
        assert_eq!(b.state(), State::Closed { failures: 2 });
        assert_eq!(b.gauge.get(), 0);
        b.admit().unwrap().record(false);
        assert!(matches!(b.state(), State::Open { .. }), "{:?}", b.state());
        assert_eq!(b.gauge.get(), 1);
    }

    #[test]
    fn closed_breaker_success_resets_the_failure_count() {
        let b = breaker(3, COOLDOWN);
        for round in 0..3 {
            b.admit().unwrap().record(false);
            b.admit().unwrap().record(false);
            assert_eq!(b.state(), State::Closed { failures: 2 }, "round {round}");
            b.admit().unwrap().record(true);
            assert_eq!(b.state(), State::Closed { failures: 0 }, "round {round}");
        }
        assert_eq!(b.gauge.get(), 0);
    }

    #[test]
    fn open_breaker_fails_fast_until_the_cooldown_is_over() {
        let b = breaker(2, COOLDOWN);
        let opened = open(&b);
        for later in [
            Duration::ZERO,
            Duration::from_secs(1),
            COOLDOWN - Duration::from_millis(1),
        ] {
            assert!(
                b.admit_at(opened + later).is_none(),
                "admitted {later:?} after opening"
            );
        }
        assert!(matches!(b.state(), State::Open { .. }));
        let trial = b
            .admit_at(opened + COOLDOWN)
            .expect("no trial after the cooldown");
        assert_eq!(trial.admission, Admission::Trial);
        assert_eq!(
            b.state(),
            State::HalfOpen {
                trial_in_flight: true
            }
        );
        assert_eq!(
            b.gauge.get(),
            1,
            "half-open still fails fast for everyone else"
        );
    }

    #[test]
    fn half_open_breaker_admits_exactly_one_of_many_concurrent_calls() {
        const THREADS: usize = 8;
        let b = breaker(1, Duration::ZERO);
        open(&b);
        for round in 0..50 {
            let admitted = AtomicUsize::new(0);
            let all_tried = Barrier::new(THREADS);
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        let permit = b.admit();
                        if permit.is_some() {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                        // Hold every permit until all threads have asked.
                        all_tried.wait();
                        drop(permit);
                    });
                }
            });
            assert_eq!(admitted.load(Ordering::SeqCst), 1, "round {round}");
            // The trial was dropped: the slot is free for the next round.
            assert_eq!(
                b.state(),
                State::HalfOpen {
                    trial_in_flight: false
                }
            );
        }
    }

    #[test]
    fn trial_success_closes_the_breaker() {
        let b = breaker(2, Duration::ZERO);
        open(&b);
        b.admit().unwrap().record(true);
        assert_eq!(b.state(), State::Closed { failures: 0 });
        assert_eq!(b.gauge.get(), 0);
        // Closed again: counting starts over.
        b.admit().unwrap().record(false);
        assert_eq!(b.state(), State::Closed { failures: 1 });
    }

    #[test]
    fn trial_failure_reopens_for_a_fresh_cooldown() {
        let b = breaker(2, COOLDOWN);
        let opened = open(&b);
        let trial = b.admit_at(opened + COOLDOWN).unwrap();
        let failed_at = Instant::now();
        trial.record(false);
        let State::Open { until } = b.state() else {
            panic!("not reopened: {:?}", b.state());
        };
        assert!(until >= failed_at + COOLDOWN);
        assert_eq!(b.gauge.get(), 1);
        assert!(b.admit_at(until - Duration::from_millis(1)).is_none());
    }

    #[test]
    fn dropped_trial_gives_the_half_open_slot_back() {
        let b = breaker(2, Duration::ZERO);
        open(&b);
        let trial = b.admit().unwrap();
        assert!(b.admit().is_none(), "a second trial beside the first");
        drop(trial);
        assert_eq!(
            b.state(),
            State::HalfOpen {
                trial_in_flight: false
            }
        );
        assert_eq!(b.gauge.get(), 1);
        // The next call is the trial, and its answer decides.
        let next = b.admit().expect("the slot was not given back");
        assert_eq!(next.admission, Admission::Trial);
        next.record(true);
        assert_eq!(b.state(), State::Closed { failures: 0 });
    }

    #[test]
    fn trial_cancelled_at_every_await_point_gives_the_slot_back() {
        const AWAITS: usize = 4;
        let b = breaker(1, Duration::ZERO);
        open(&b);
        let mut cx = Context::from_waker(Waker::noop());
        for polls in 0..=AWAITS {
            let mut call = Box::pin(b.call(Steps {
                left: AWAITS,
                outcome: Ok(()),
            }));
            for _ in 0..polls {
                assert!(call.as_mut().poll(&mut cx).is_pending());
            }
            if polls > 0 {
                assert_eq!(
                    b.state(),
                    State::HalfOpen {
                        trial_in_flight: true
                    }
                );
            }
            drop(call);
            assert!(
                !matches!(
                    b.state(),
                    State::HalfOpen {
                        trial_in_flight: true
                    }
                ),
                "dropped after {polls} polls, the trial slot is still taken"
            );
            assert!(
                b.admit().is_some(),
                "dropped after {polls} polls: no trial admitted"
            );
        }
        // Run to the end this time: the trial's success closes the breaker.
        let mut call = Box::pin(b.call(Steps {
            left: AWAITS,
            outcome: Ok(()),
        }));
        let finished = loop {
            if let Poll::Ready(r) = call.as_mut().poll(&mut cx) {
                break r;
            }
        };
        assert_eq!(finished, Some(Ok(())));
        assert_eq!(b.state(), State::Closed { failures: 0 });
        assert_eq!(b.gauge.get(), 0);
    }

    #[test]
    fn finished_trial_failure_reopens_through_call() {
        let b = breaker(1, COOLDOWN);
        let opened = open(&b);
        // Make the trial due now by moving the deadline into the past.
        b.lock().state = State::Open { until: opened };
        let mut cx = Context::from_waker(Waker::noop());
        let mut call = Box::pin(b.call(Steps {
            left: 1,
            outcome: Err(()),
        }));
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(call.as_mut().poll(&mut cx), Poll::Ready(Some(Err(()))));
        assert!(matches!(b.state(), State::Open { .. }), "{:?}", b.state());
        assert!(b.admit().is_none());
        drop(call);
        assert!(matches!(b.state(), State::Open { .. }), "settled twice");
    }

    #[test]
    fn dropped_ordinary_call_changes_nothing() {
        let b = breaker(3, COOLDOWN);
        b.admit().unwrap().record(false);
        drop(b.admit().unwrap());
        assert_eq!(b.state(), State::Closed { failures: 1 });
    }

    #[test]
    fn late_outcomes_of_an_earlier_closed_period_are_ignored() {
        let b = breaker(2, COOLDOWN);
        let late: Vec<_> = (0..4).map(|_| b.admit().unwrap()).collect();
        let mut late = late.into_iter();
        late.next().unwrap().record(false);
        late.next().unwrap().record(false);
        let State::Open { until } = b.state() else {
            panic!("not open")
        };
        // A success still in flight when it opened neither closes it nor moves the deadline.
        late.next().unwrap().record(true);
        assert_eq!(b.state(), State::Open { until });
        // After a trial closes it, a failure from before does not count in the new period.
        b.admit_at(until).unwrap().record(true);
        late.next().unwrap().record(false);
        assert_eq!(b.state(), State::Closed { failures: 0 });
    }

    #[test]
    fn zero_threshold_never_opens() {
        let b = breaker(0, COOLDOWN);
        for _ in 0..100 {
            b.admit().expect("a disabled breaker refused").record(false);
        }
        assert_eq!(b.state(), State::Closed { failures: 0 });
        assert_eq!(b.gauge.get(), 0);
    }
}

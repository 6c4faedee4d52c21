//! The schedule loop and the retention loop of `canary run`.
//!
//! The loop sleeps until the next tick (decided by the pure [`timing`]), runs one
//! cycle through the shared single-flight [`CycleRunner`], and repeats. Its contract:
//! - waiting is interruptible: cancellation ends the wait at once;
//! - a cycle is not: once started it runs to the end (the cycle's state-DB transaction either
//!   commits or never starts, and the lease is released instead of left to expire), and the
//!   loop stops right after it;
//! - a cycle already running elsewhere makes this tick a no-op: logged at INFO when it is this
//!   process's own (an admin's `run-cycle`), at WARN naming the lease holder and its age when it
//!   is another process (a `canary check`, another daemon); any other cycle error is logged at ERROR
//!   (that cycle checked nothing) and the schedule continues (the next tick may well succeed);
//! - ticks missed while a cycle overran are skipped, never replayed in a burst.
//!
//! It sleeps with `tokio::time`, so tests drive it with paused time; the clock and the random
//! source are injected for the same reason.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cycle::{CycleError, CycleRequest, CycleResult, Trigger};
use crate::schedule::runner::CycleRunner;
use crate::timing::{self, Cadence};

/// How often retention runs (plus once at start).
pub const RETENTION_EVERY: Duration = Duration::from_secs(24 * 3600);

const MS_PER_DAY: i64 = 86_400_000;

/// When scheduled cycles run.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Interval or cron.
    pub cadence: Cadence,
    /// Delay before the first cycle.
    pub startup_delay: Duration,
    /// Random extra delay per tick, in `[0, jitter)`.
    pub jitter: Duration,
}

/// Runs scheduled cycles until `cancel` fires; `on_cycle` sees every completed cycle (metrics).
pub async fn run_schedule(
    runner: CycleRunner,
    schedule: Schedule,
    cancel: CancellationToken,
    on_cycle: impl Fn(&CycleResult),
) {
    let request = CycleRequest {
        trigger: Trigger::Schedule,
        only: None,
    };
    let (runner, request) = (&runner, &request);
    schedule_loop(
        &schedule,
        &cancel,
        crate::clock::now_ms,
        rand::random::<f64>,
        move || runner.run(request),
        |result: &CycleResult| {
            tracing::debug!(
                cycle.id = result.cycle_id,
                cycle.verdict = result.verdict().as_str(),
                violations = result.violations.len(),
                duration_ms = result.duration_ms,
                "scheduled cycle done"
            );
            on_cycle(result);
        },
    )
    .await;
}

/// The loop itself, with the clock (unix ms), the random fraction source and the cycle call
/// injected. Returns when `cancel` fires (after any in-flight cycle), or when a cron expression
/// has no future match.
pub async fn schedule_loop<T, Fut>(
    schedule: &Schedule,
    cancel: &CancellationToken,
    now_ms: impl Fn() -> i64,
    random_fraction: impl Fn() -> f64,
    run_cycle: impl Fn() -> Fut,
    on_cycle: impl Fn(&T),
) where
    Fut: Future<Output = Result<T, CycleError>>,
{
    let cadence = &schedule.cadence;
    let Some(mut tick) = timing::first_tick(cadence, now_ms(), schedule.startup_delay) else {
        tracing::error!(
            schedule = %cadence.describe(),
            "the schedule never fires: no scheduled cycles will run"
        );
        return;
    };
    let anchor = tick;
    tracing::info!(
        schedule = %cadence.describe(),
        first_at = %crate::clock::format_ms(tick),
        "schedule started"
    );
    loop {
        let fire = tick.saturating_add(millis(timing::jitter_delay(
            schedule.jitter,
            random_fraction(),
        )));
        let delay = Duration::from_millis(u64::try_from(fire - now_ms()).unwrap_or(0));
        // `biased`: when both are ready, stopping wins over starting a cycle.
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
        // Not raced against `cancel`: dropping this future mid-cycle would leave the lease held
        // until it expires. The daemon bounds the whole shutdown with `shutdown_timeout`.
        match run_cycle().await {
            Ok(result) => on_cycle(&result),
            Err(CycleError::InProgress(Some(held))) if !held.this_process => {
                // Another process: a live one is normal single flight, but one that stays is
                // worth seeing (a crashed holder on this host is taken over, not waited for).
                tracing::warn!(
                    lease.holder = %held.holder,
                    lease.age_ms = held.age_ms,
                    "a cycle is already in progress in another process; skipping this tick"
                );
            }
            Err(CycleError::InProgress(held)) => {
                tracing::info!(
                    lease.holder = held.as_ref().map(|h| h.holder.as_str()),
                    lease.age_ms = held.as_ref().map(|h| h.age_ms),
                    "a cycle is already in progress in this process; skipping this tick"
                );
            }
            // ERROR: a failed cycle checked nothing, and the next tick may fail the same way
            // (state database full, read-only or corrupt) while everything looks quiet.
            Err(error) => tracing::error!(error = %error, "scheduled cycle failed"),
        }
        if cancel.is_cancelled() {
            break;
        }
        let now = now_ms();
        let Some(next) = timing::next_tick(cadence, anchor, now.max(tick)) else {
            tracing::error!(schedule = %cadence.describe(), "the schedule has no further tick");
            return;
        };
        let skipped = timing::skipped_ticks(cadence, anchor, tick, next, 10_000);
        if skipped > 0 {
            tracing::warn!(
                skipped_ticks = skipped,
                next_at = %crate::clock::format_ms(next),
                "the cycle overran its schedule; missed ticks skipped"
            );
        }
        tick = next;
    }
    tracing::info!("schedule stopped");
}

/// Prunes cycles and violations older than `retention_days` now and then every `every`, until
/// `cancel` fires. Waits for a running cycle (the state DB handle is shared) but never delays
/// one for long: pruning goes in small batches.
pub async fn run_retention(
    runner: CycleRunner,
    retention_days: u32,
    every: Duration,
    cancel: CancellationToken,
) {
    loop {
        let cutoff = crate::clock::now_ms()
            .saturating_sub(i64::from(retention_days).saturating_mul(MS_PER_DAY));
        match runner.with_db(move |db| db.prune(cutoff)).await {
            Ok(stats) if stats.cycles > 0 => tracing::info!(
                cycles = stats.cycles,
                violations = stats.violations,
                retention_days,
                "old cycles pruned"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "retention prune failed; retrying later"),
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use super::*;
    use tokio::time::Instant;

    /// A unix-ms clock that follows tokio's (paused) clock, starting at `base_ms`.
    fn virtual_clock(base_ms: i64) -> impl Fn() -> i64 {
        let start = Instant::now();
        move || base_ms + i64::try_from(start.elapsed().as_millis()).unwrap()
    }

    fn interval(secs: u64, delay_secs: u64) -> Schedule {
        Schedule {
            cadence: Cadence::Interval(Duration::from_secs(secs)),
            startup_delay: Duration::from_secs(delay_secs),
            jitter: Duration::ZERO,
        }
    }

    /// Runs the loop with cycles that take `cycle_secs(n)` (virtual) seconds, recording the
    /// virtual second each cycle starts at, until `stop_after` cycles ran, then cancels.
    async fn drive(
        schedule: Schedule,
        base_ms: i64,
        stop_after: usize,
        cycle_secs: impl Fn(usize) -> u64,
    ) -> Vec<u64> {
        let starts = Rc::new(RefCell::new(Vec::new()));
        let cancel = CancellationToken::new();
        let origin = Instant::now();
        let run = || {
            let n = starts.borrow().len();
            starts.borrow_mut().push(origin.elapsed().as_secs());
            if n + 1 >= stop_after {
                cancel.cancel();
            }
            let secs = cycle_secs(n);
            async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                Ok::<(), CycleError>(())
            }
        };
        schedule_loop(
            &schedule,
            &cancel,
            virtual_clock(base_ms),
            || 0.0,
            run,
            |()| {},
        )
        .await;
        starts.take()
    }

    /// Everything logged while it lives, as text with levels (a thread-local subscriber: the
    /// tests run on tokio's current-thread runtime).
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_scheduled_cycle_is_an_error_and_the_schedule_goes_on() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let cancel = CancellationToken::new();
        let calls = Cell::new(0);
        schedule_loop(
            &interval(60, 0),
            &cancel,
            virtual_clock(0),
            || 0.0,
            || {
                calls.set(calls.get() + 1);
                if calls.get() == 2 {
                    cancel.cancel();
                }
                async { Err::<(), _>(CycleError::UnknownInvariants(vec!["X-99".to_owned()])) }
            },
            |()| {},
        )
        .await;
        assert_eq!(calls.get(), 2, "the schedule continues after a failure");
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let failed: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("scheduled cycle failed"))
            .collect();
        assert_eq!(failed.len(), 2, "{text}");
        for line in failed {
            assert!(line.contains("ERROR"), "{line}");
            assert!(line.contains("X-99"), "the error is in the line: {line}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn startup_delay_then_one_cycle_per_tick() {
        let starts = drive(interval(60, 30), 1_000_000, 5, |_| 2).await;
        assert_eq!(starts, vec![30, 90, 150, 210, 270]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_overrunning_cycle_does_not_cause_a_catch_up_burst() {
        // The second cycle takes 200 s: ticks at 120, 180 and 240 are missed; the next cycle
        // runs at 300, the following on the grid.
        let starts = drive(interval(60, 0), 0, 4, |n| if n == 1 { 200 } else { 1 }).await;
        assert_eq!(starts, vec![0, 60, 300, 360]);
    }

    #[tokio::test(start_paused = true)]
    async fn cron_ticks_follow_the_wall_clock() {
        let schedule = Schedule {
            cadence: Cadence::cron("*/5 * * * *").unwrap(),
            startup_delay: Duration::ZERO,
            jitter: Duration::ZERO,
        };
        // Start at 12:01:00 UTC: cycles at 12:05, 12:10, 12:15.
        let base = chrono::DateTime::parse_from_rfc3339("2026-11-23T12:01:00Z")
            .unwrap()
            .timestamp_millis();
        let starts = drive(schedule, base, 3, |_| 1).await;
        assert_eq!(starts, vec![240, 540, 840]);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_delays_each_tick_without_moving_the_grid() {
        let schedule = Schedule {
            jitter: Duration::from_secs(10),
            ..interval(60, 0)
        };
        let cancel = CancellationToken::new();
        let origin = Instant::now();
        let starts = RefCell::new(Vec::new());
        schedule_loop(
            &schedule,
            &cancel,
            virtual_clock(0),
            || 0.5,
            || {
                starts.borrow_mut().push(origin.elapsed().as_secs());
                if starts.borrow().len() == 3 {
                    cancel.cancel();
                }
                async { Ok::<(), CycleError>(()) }
            },
            |()| {},
        )
        .await;
        assert_eq!(starts.take(), vec![5, 65, 125]);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_and_in_progress_skip_the_tick_and_the_schedule_goes_on() {
        let cancel = CancellationToken::new();
        let calls = RefCell::new(0_u32);
        let seen = RefCell::new(Vec::new());
        schedule_loop(
            &interval(10, 0),
            &cancel,
            virtual_clock(0),
            || 0.0,
            || {
                *calls.borrow_mut() += 1;
                let n = *calls.borrow();
                if n == 4 {
                    cancel.cancel();
                }
                async move {
                    match n {
                        1 => Err(CycleError::InProgress(None)),
                        2 => Err(CycleError::UnknownInvariants(vec!["X-1".into()])),
                        _ => Ok(n),
                    }
                }
            },
            |n: &u32| seen.borrow_mut().push(*n),
        )
        .await;
        assert_eq!(*calls.borrow(), 4);
        assert_eq!(seen.take(), vec![3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_during_the_wait_returns_promptly() {
        let cancel = CancellationToken::new();
        let origin = Instant::now();
        let canceller = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(7)).await;
                cancel.cancel();
            })
        };
        let calls = RefCell::new(0);
        schedule_loop(
            &interval(3600, 3600),
            &cancel,
            virtual_clock(0),
            || 0.0,
            || {
                *calls.borrow_mut() += 1;
                async { Ok::<(), CycleError>(()) }
            },
            |()| {},
        )
        .await;
        canceller.await.unwrap();
        assert_eq!(origin.elapsed(), Duration::from_secs(7));
        assert_eq!(*calls.borrow(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_in_flight_cycle_finishes_before_the_loop_stops() {
        let cancel = CancellationToken::new();
        let origin = Instant::now();
        let finished = Rc::new(RefCell::new(false));
        let canceller = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                cancel.cancel();
            })
        };
        schedule_loop(
            &interval(60, 0),
            &cancel,
            virtual_clock(0),
            || 0.0,
            || {
                let finished = Rc::clone(&finished);
                async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    *finished.borrow_mut() = true;
                    Ok::<(), CycleError>(())
                }
            },
            |()| {},
        )
        .await;
        canceller.await.unwrap();
        assert!(*finished.borrow());
        assert_eq!(origin.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn retention_prunes_at_start_and_stops_on_cancel() {
        use crate::config::Config;
        use crate::store::StateDb;
        use std::sync::Arc;

        let runner = CycleRunner::new(
            Arc::new(Config::default()),
            StateDb::open_in_memory().unwrap(),
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_retention(runner, 30, RETENTION_EVERY, cancel.clone()));
        tokio::time::sleep(Duration::from_secs(3 * 24 * 3600)).await;
        let origin = Instant::now();
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(origin.elapsed(), Duration::ZERO);
    }
}

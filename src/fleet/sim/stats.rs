//! The simulator's counters: atomics the engine bumps while it runs, and the copy
//! ([`FleetStatsSnapshot`]) callers read and print. No store access.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of what the simulator did (shared with the caller while it runs).
#[derive(Debug, Default)]
pub struct FleetStats {
    pub(super) fires: AtomicU64,
    pub(super) queued: AtomicU64,
    pub(super) skipped: AtomicU64,
    pub(super) started: AtomicU64,
    pub(super) finished: AtomicU64,
    pub(super) leased: AtomicU64,
    pub(super) reaped: AtomicU64,
    pub(super) sentinels: AtomicU64,
    pub(super) heartbeats: AtomicU64,
    pub(super) redis_first_claims: AtomicU64,
    pub(super) redis_first_finishes: AtomicU64,
    pub(super) max_queue: AtomicU64,
    pub(super) errors: AtomicU64,
}

/// A copy of [`FleetStats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetStatsSnapshot {
    /// Schedule fires.
    pub fires: u64,
    /// `queued` rows inserted.
    pub queued: u64,
    /// `skipped` rows inserted (queue full).
    pub skipped: u64,
    /// Slot executions started (claimed).
    pub started: u64,
    /// Slot executions finished (both halves done).
    pub finished: u64,
    /// Pull-claimed (leased) executions started.
    pub leased: u64,
    /// Leased executions finished by the reaper.
    pub reaped: u64,
    /// Drain sentinels placed.
    pub sentinels: u64,
    /// Drain heartbeats written.
    pub heartbeats: u64,
    /// Claims that took the slot before the row went running.
    pub redis_first_claims: u64,
    /// Finishes that released the slot before the row went terminal.
    pub redis_first_finishes: u64,
    /// Longest queue seen on one agent.
    pub max_queue: u64,
    /// Store writes that failed (each logged).
    pub errors: u64,
}

impl FleetStats {
    /// The counters now.
    pub fn snapshot(&self) -> FleetStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FleetStatsSnapshot {
            fires: g(&self.fires),
            queued: g(&self.queued),
            skipped: g(&self.skipped),
            started: g(&self.started),
            finished: g(&self.finished),
            leased: g(&self.leased),
            reaped: g(&self.reaped),
            sentinels: g(&self.sentinels),
            heartbeats: g(&self.heartbeats),
            redis_first_claims: g(&self.redis_first_claims),
            redis_first_finishes: g(&self.redis_first_finishes),
            max_queue: g(&self.max_queue),
            errors: g(&self.errors),
        }
    }
}

/// One more.
pub(super) fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

impl std::fmt::Display for FleetStatsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} fires, {} queued, {} skipped, {} started / {} finished with a slot \
             ({} slot-first claims, {} slot-first releases), {} leased / {} reaped, \
             {} drain sentinels, {} heartbeats, longest queue {}, {} write errors",
            self.fires,
            self.queued,
            self.skipped,
            self.started,
            self.finished,
            self.redis_first_claims,
            self.redis_first_finishes,
            self.leased,
            self.reaped,
            self.sentinels,
            self.heartbeats,
            self.max_queue,
            self.errors
        )
    }
}

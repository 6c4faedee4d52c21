//! [`Metrics`]: the Prometheus registry behind `GET /metrics` and the handful of facts it
//! counts. Cycle facts come in through [`Metrics::observe_cycle`] (called by whoever ran the
//! cycle: the run-cycle handler here, the schedule loop in the daemon). Alert deliveries are
//! counted by the deliverer in an [`AlertStats`] this struct owns (hand [`Metrics::alert_stats`]
//! to `Deliverer::with_stats`) and copied into the registry at scrape time. The outbox depth is
//! read from the state DB at scrape time, because only the database knows it exactly (the
//! deliverer and the cycle both change it).
//!
//! It must not decide anything: it only counts what it is told and renders the text format.

use std::fmt;
use std::sync::{Arc, Mutex};

use canary_invariants::{AnomalyKind, Outcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::alert::{AlertStats, AlertStatsSnapshot};
use crate::cycle::CycleResult;
use crate::store::OutboxDepth;

/// The content type of the rendered text (OpenMetrics, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvariantLabel {
    invariant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

/// `canary_instance`, not `instance`: Prometheus sets `instance` on every scraped series (the
/// target's address), and a clashing label would be renamed `exported_instance`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabel {
    canary_instance: String,
    version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// Every metric canary exports. Cheap to share behind an `Arc`; all updates are atomic.
pub struct Metrics {
    registry: Registry,
    cycles: Family<OutcomeLabel, Counter>,
    cycle_duration: Histogram,
    last_cycle: Gauge<f64, std::sync::atomic::AtomicU64>,
    violations: Family<InvariantLabel, Counter>,
    state: Family<InvariantLabel, Gauge>,
    sources_unavailable: Family<SourceLabel, Counter>,
    anomalies: Family<KindLabel, Gauge>,
    alerts: Family<OutcomeLabel, Counter>,
    alert_stats: Arc<AlertStats>,
    /// Serialises the copy from `alert_stats` into `alerts`, so two concurrent scrapes cannot
    /// both add the same delta.
    alert_sync: Mutex<()>,
    outbox_pending: Gauge,
    outbox_abandoned: Gauge,
    heartbeat: Family<OutcomeLabel, Counter>,
    silenced: Family<InvariantLabel, Counter>,
    released: Family<InvariantLabel, Counter>,
    info: Family<InfoLabel, Gauge>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (names carry the `canary_` prefix).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("canary");
        let cycles = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "cycles",
            "Recorded cycles by overall verdict (green, red, unknown)",
            cycles.clone(),
        );
        // 5 ms .. ~80 s: a cycle over a small platform is milliseconds, a huge one seconds.
        let cycle_duration = Histogram::new(exponential_buckets(0.005, 2.0, 15));
        registry.register(
            "cycle_duration_seconds",
            "Wall time of a cycle (collect, evaluate, record)",
            cycle_duration.clone(),
        );
        let last_cycle = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "last_cycle_timestamp_seconds",
            "Unix time of the last observed cycle's snapshot",
            last_cycle.clone(),
        );
        let violations = Family::<InvariantLabel, Counter>::default();
        registry.register(
            "violations",
            "Violations found, by invariant",
            violations.clone(),
        );
        let state = Family::<InvariantLabel, Gauge>::default();
        registry.register(
            "invariant_state",
            "Last outcome per invariant: 0 green, 1 red, 2 unknown",
            state.clone(),
        );
        let sources_unavailable = Family::<SourceLabel, Counter>::default();
        registry.register(
            "source_unavailable",
            "Cycles in which a platform store could not be read, by source",
            sources_unavailable.clone(),
        );
        let anomalies = Family::<KindLabel, Gauge>::default();
        registry.register(
            "platform_anomalies",
            "Odd platform data the last observed cycle carried instead of guessing, by kind \
             (G-05 judges the malformed kinds)",
            anomalies.clone(),
        );
        for kind in AnomalyKind::ALL {
            anomalies
                .get_or_create(&KindLabel {
                    kind: kind.code().to_owned(),
                })
                .set(0);
        }
        let alerts = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "alerts",
            "Alert delivery attempts by outcome (delivered, or the failure reason)",
            alerts.clone(),
        );
        for (outcome, _) in AlertStatsSnapshot::default().by_outcome() {
            alerts
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.to_owned(),
                })
                .inc_by(0);
        }
        let outbox_pending = Gauge::default();
        registry.register(
            "outbox_pending",
            "Alerts in the outbox neither delivered nor abandoned (read at scrape time)",
            outbox_pending.clone(),
        );
        let outbox_abandoned = Gauge::default();
        registry.register(
            "outbox_abandoned",
            "Alerts given up after alerts.give_up_after (read at scrape time)",
            outbox_abandoned.clone(),
        );
        let heartbeat = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "heartbeat_pings",
            "Dead man's switch pings (alerts.heartbeat) by outcome: ok, failed",
            heartbeat.clone(),
        );
        for outcome in ["ok", "failed"] {
            heartbeat
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.to_owned(),
                })
                .inc_by(0);
        }
        let silenced = Family::<InvariantLabel, Counter>::default();
        registry.register(
            "alerts_silenced",
            "Transitions recorded but not sent because a silence or maintenance window covered \
             them, by invariant (or source:<name>)",
            silenced.clone(),
        );
        let released = Family::<InvariantLabel, Counter>::default();
        registry.register(
            "alerts_released",
            "Silenced alerts sent after all because their silence ended with Slack out of date \
             (one message each), by invariant",
            released.clone(),
        );
        let info = Family::<InfoLabel, Gauge>::default();
        registry.register(
            "info",
            "Always 1: which canary this is (alerts.instance, default the host name) and its \
             version",
            info.clone(),
        );
        // Pre-create the fixed label values so the series exist at 0 from the first scrape:
        // `rate()` and absence alerts misbehave on series that appear only on their first event.
        for outcome in [Outcome::Green, Outcome::Red, Outcome::Unknown] {
            cycles
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.as_str().to_owned(),
                })
                .inc_by(0);
        }
        for source in canary_invariants::blind::SOURCES {
            sources_unavailable
                .get_or_create(&SourceLabel {
                    source: source.as_str().to_owned(),
                })
                .inc_by(0);
        }
        Metrics {
            registry,
            cycles,
            cycle_duration,
            last_cycle,
            violations,
            state,
            sources_unavailable,
            anomalies,
            alerts,
            alert_stats: Arc::new(AlertStats::default()),
            alert_sync: Mutex::new(()),
            outbox_pending,
            outbox_abandoned,
            heartbeat,
            silenced,
            released,
            info,
        }
    }

    /// Sets `canary_info{canary_instance, version} 1` (once, at start; a second call replaces
    /// the first).
    pub fn set_instance(&self, instance: &str) {
        self.info.clear();
        self.info
            .get_or_create(&InfoLabel {
                canary_instance: instance.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
    }

    /// Counts one heartbeat ping.
    pub fn observe_heartbeat(&self, ok: bool) {
        self.heartbeat
            .get_or_create(&OutcomeLabel {
                outcome: if ok { "ok" } else { "failed" }.to_owned(),
            })
            .inc();
    }

    /// Counts one finished cycle (call it once per cycle, whatever triggered it).
    pub fn observe_cycle(&self, result: &CycleResult) {
        self.cycles
            .get_or_create(&OutcomeLabel {
                outcome: result.verdict().as_str().to_owned(),
            })
            .inc();
        self.cycle_duration
            .observe((result.duration_ms / 1000.0).max(0.0));
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&result.taken_at) {
            // Millisecond precision fits an f64 exactly for any realistic date.
            #[allow(clippy::cast_precision_loss)]
            self.last_cycle.set(t.timestamp_millis() as f64 / 1000.0);
        }
        // The full counts, not the evidence kept: a cap must not lower the metric.
        for (id, count) in &result.violation_counts {
            self.violations
                .get_or_create(&InvariantLabel {
                    invariant: id.clone(),
                })
                .inc_by(count.total);
        }
        for (id, outcome) in &result.outcomes {
            self.state
                .get_or_create(&InvariantLabel {
                    invariant: id.clone(),
                })
                .set(state_value(*outcome));
        }
        for kind in AnomalyKind::ALL {
            let count = result
                .diagnostics
                .anomalies
                .iter()
                .filter(|a| a.kind == kind)
                .count();
            self.anomalies
                .get_or_create(&KindLabel {
                    kind: kind.code().to_owned(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let silenced = result
            .transitions
            .iter()
            .chain(&result.blind.transitions)
            .filter(|t| t.silenced_by.is_some());
        for t in silenced {
            self.silenced
                .get_or_create(&InvariantLabel {
                    invariant: t.invariant_id.clone(),
                })
                .inc();
        }
        for r in &result.released {
            self.released
                .get_or_create(&InvariantLabel {
                    invariant: r.invariant_id.clone(),
                })
                .inc();
        }
        for s in &result.sources_unavailable {
            self.sources_unavailable
                .get_or_create(&SourceLabel {
                    source: s.source.as_str().to_owned(),
                })
                .inc();
        }
    }

    /// The delivery counters `/metrics` reports: give this to the alert deliverer
    /// (`Deliverer::with_stats`), so both count into the same place.
    pub fn alert_stats(&self) -> Arc<AlertStats> {
        Arc::clone(&self.alert_stats)
    }

    /// Brings the `alerts` counters up to the deliverer's atomics (monotonic: only the increase
    /// since the last scrape is added).
    fn sync_alerts(&self) {
        let _serialised = self
            .alert_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (outcome, count) in self.alert_stats.snapshot().by_outcome() {
            let counter = self.alerts.get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            });
            let seen = counter.get();
            if count > seen {
                counter.inc_by(count - seen);
            }
        }
    }

    /// Sets the outbox gauges (read from the state DB just before rendering).
    pub fn set_outbox_depth(&self, depth: OutboxDepth) {
        self.outbox_pending
            .set(i64::try_from(depth.pending).unwrap_or(i64::MAX));
        self.outbox_abandoned
            .set(i64::try_from(depth.abandoned).unwrap_or(i64::MAX));
    }

    /// The registry in the text exposition format.
    pub fn render(&self) -> Result<String, fmt::Error> {
        self.sync_alerts();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The gauge value of an outcome (documented in the metric's help).
fn state_value(outcome: Outcome) -> i64 {
    match outcome {
        Outcome::Green => 0,
        Outcome::Red => 1,
        Outcome::Unknown => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_and_alert_counts() {
        let m = Metrics::new();
        let stats = m.alert_stats();
        stats
            .delivered
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        assert!(
            m.render()
                .unwrap()
                .contains("canary_alerts_total{outcome=\"delivered\"} 2")
        );
        stats
            .delivered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        m.set_outbox_depth(OutboxDepth {
            pending: 3,
            abandoned: 1,
        });
        let text = m.render().unwrap();
        for name in [
            "canary_cycles_total{outcome=\"green\"} 0",
            "canary_cycles_total{outcome=\"unknown\"} 0",
            "canary_source_unavailable_total{source=\"redis\"} 0",
            "canary_source_unavailable_total{source=\"docker\"} 0",
            "canary_cycle_duration_seconds_count 0",
            "# TYPE canary_invariant_state gauge",
            "# TYPE canary_violations counter",
            "canary_alerts_total{outcome=\"delivered\"} 3",
            "canary_alerts_total{outcome=\"abandoned\"} 0",
            "canary_outbox_pending 3",
            "canary_outbox_abandoned 1",
            "canary_platform_anomalies{kind=\"wrong_type\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn state_values_are_stable() {
        assert_eq!(state_value(Outcome::Green), 0);
        assert_eq!(state_value(Outcome::Red), 1);
        assert_eq!(state_value(Outcome::Unknown), 2);
    }
}

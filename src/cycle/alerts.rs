//! The Slack payloads a cycle queues with its transitions (one per transition, same order): the
//! invariants' ([`alert_payloads`]) and the blind sources' ([`blind_payloads`]).
//!
//! Built at record time, from the cycle's own violations and snapshot instant, so an outbox row
//! says what was true then whenever it is delivered. It only looks the metadata up in the registry
//! (catalog or custom) and calls the pure builder in `alert::slack`; it must not send anything (the
//! deliverer does) nor decide which transitions exist (the pure diff does).

use canary_invariants::{TransitionKind, blind};

use crate::alert::{blind as blind_alert, slack};
use crate::config::Config;
use crate::registry::Registry;

use super::Staged;

/// One Slack payload per transition (same order), built now so the outbox row says what was
/// true at this snapshot whenever it is delivered. No webhook configured = silent sink: no
/// payloads, hence no outbox rows (the transitions are still recorded). A webhook file that
/// cannot be read counts as configured, so the alerts wait in the outbox until it is fixed.
pub(super) fn alert_payloads(config: &Config, staged: &Staged) -> Vec<serde_json::Value> {
    if matches!(config.webhook_url(), Ok(None)) {
        return Vec::new();
    }
    let registry = Registry::new(config);
    staged
        .transitions
        .iter()
        .map(|t| {
            // The registry knows built-in and custom invariants alike; an id it does not know
            // (a custom invariant removed from the configuration) still gets its message.
            let meta = registry.find(&t.invariant_id).map_or(
                slack::Meta {
                    name: "",
                    runbook: "",
                },
                |d| slack::Meta {
                    name: d.name(),
                    runbook: d.runbook(),
                },
            );
            let total = staged
                .eval
                .violation_counts
                .get(&t.invariant_id)
                .map_or(0, |n| usize::try_from(*n).unwrap_or(usize::MAX));
            slack::payload_with_total(t, &staged.eval.violations, total, staged.taken_at_ms, meta)
        })
        .collect()
}

/// One "canary is blind" payload per blind-source transition (same order), or none for a silent
/// sink. Fired: this cycle's error and unreadable run; resolved: the run the source just left.
pub(super) fn blind_payloads(config: &Config, staged: &Staged) -> Vec<serde_json::Value> {
    if matches!(config.webhook_url(), Ok(None)) {
        return Vec::new();
    }
    staged
        .blind
        .transitions
        .iter()
        .zip(&staged.blind.left)
        .map(|(t, left)| {
            let source = blind::source_of(&t.invariant_id);
            let name = source.map_or(t.invariant_id.as_str(), |s| s.as_str());
            let error = staged
                .sources_unavailable
                .iter()
                .find(|u| Some(u.source) == source)
                .map(|u| u.error.as_str());
            let run = match t.kind {
                TransitionKind::Fired => staged
                    .blind
                    .states
                    .iter()
                    .find(|s| s.invariant_id == t.invariant_id),
                TransitionKind::Resolved => left.as_ref(),
            };
            let facts = blind_alert::Blind {
                source: name,
                error,
                cycles: run.map_or(0, |s| s.consecutive),
                since_ms: run.map_or(t.at_ms, |s| s.since_ms),
            };
            blind_alert::payload(t, &facts, staged.taken_at_ms)
        })
        .collect()
}

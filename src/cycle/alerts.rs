//! The Slack payloads a cycle queues with its transitions (one per transition, same order).
//!
//! Built at record time, from the cycle's own violations and snapshot instant, so an outbox row
//! says what was true then whenever it is delivered. It only chooses the metadata (catalog or
//! custom) and calls the pure builder in `alert::slack`; it must not send anything (the
//! deliverer does) nor decide which transitions exist (the pure diff does).

use crate::alert::slack;
use crate::config::Config;

use super::Staged;

/// One Slack payload per transition (same order), built now so the outbox row says what was
/// true at this snapshot whenever it is delivered. No webhook configured = silent sink: no
/// payloads, hence no outbox rows (the transitions are still recorded). A webhook file that
/// cannot be read counts as configured, so the alerts wait in the outbox until it is fixed.
pub(super) fn alert_payloads(config: &Config, staged: &Staged) -> Vec<serde_json::Value> {
    if matches!(config.webhook_url(), Ok(None)) {
        return Vec::new();
    }
    staged
        .transitions
        .iter()
        .map(|t| {
            // Custom invariants carry their name and runbook in the configuration.
            let custom = config.custom(&t.invariant_id).map(|c| slack::Meta {
                name: &c.name,
                runbook: &c.runbook,
            });
            match custom {
                Some(meta) => {
                    slack::payload_with(t, &staged.eval.violations, staged.taken_at_ms, meta)
                }
                None => slack::payload(t, &staged.eval.violations, staged.taken_at_ms),
            }
        })
        .collect()
}

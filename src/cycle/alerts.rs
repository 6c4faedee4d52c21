//! The alerts a cycle queues with its transitions, decided and built INSIDE the cycle's one
//! transaction (the store calls [`Planning::plan`] once the episode ids are known): which
//! transitions a silence or maintenance window covers (recorded silenced, not sent), which
//! silenced transitions are released now that nothing covers them (one message), and every
//! payload, naming its instance and the violation ids it summarises. So nothing is lost or sent
//! twice if canary stops around a silence's end: the decision and its outbox rows commit together.
//!
//! It only gathers facts and calls the pure parts (`alert::silence` decides, `alert::slack` and
//! `alert::blind` word the messages); it must not send anything (the deliverer does) nor decide
//! which transitions exist (the pure diff does).

use canary_invariants::{InvariantState, Outcome, Transition, TransitionKind, blind};
use serde_json::Value;

use crate::alert::silence::{self, Matcher, Now, PendingView};
use crate::alert::{blind as blind_alert, slack};
use crate::clock::format_ms;
use crate::config::Config;
use crate::registry::Registry;
use crate::store::{AlertContext, AlertPlan, PlannedAlert, Release};
use crate::timing::{Cadence, window_open};

use super::Staged;

/// Everything the plan needs besides the cycle's own data, owned so it can move to the blocking
/// pool with the record.
pub(super) struct Planning {
    config: Config,
    instance: String,
    /// The maintenance windows open at the snapshot, as matchers (`window:<n>`).
    windows: Vec<Matcher>,
    /// A webhook is configured (otherwise: decisions are still recorded, no payloads).
    webhook: bool,
}

/// The `alerts.maintenance_windows` open at `at_ms`, as matchers named `window:<index>`. A cron
/// that does not parse (validation refuses it first) opens nothing.
pub(super) fn open_windows(config: &Config, at_ms: i64) -> Vec<Matcher> {
    config
        .alerts
        .maintenance_windows
        .iter()
        .enumerate()
        .filter(|(_, w)| Cadence::cron(&w.cron).is_ok_and(|c| window_open(&c, w.duration, at_ms)))
        .map(|(i, w)| Matcher {
            by: format!("window:{i}"),
            invariant_ids: w.invariants.clone(),
            subject: w.subject.clone(),
        })
        .collect()
}

impl Planning {
    pub(super) fn new(config: &Config, taken_at_ms: i64) -> Planning {
        Planning {
            config: config.clone(),
            instance: config.alerts.instance_name(),
            windows: open_windows(config, taken_at_ms),
            // A webhook file that cannot be read counts as configured, so the alerts wait in
            // the outbox until it is fixed.
            webhook: !matches!(config.webhook_url(), Ok(None)),
        }
    }

    /// One decision (and payload) per transition, invariants' then blind sources' (the order
    /// `all_transitions` has), and the releases.
    pub(super) fn plan(&self, staged: &Staged, ctx: &AlertContext<'_>) -> AlertPlan {
        let mut matchers = self.windows.clone();
        matchers.extend(ctx.silences.iter().map(|s| Matcher {
            by: format!("silence:{}", s.id),
            invariant_ids: s.invariant_ids.clone(),
            subject: s.subject.clone(),
        }));
        let registry = Registry::new(&self.config);
        let mut transitions = Vec::new();
        for t in &staged.transitions {
            let pending = ctx.pending.get(&t.invariant_id).map(view);
            let subjects = self.subjects(staged, ctx, &t.invariant_id, t.kind);
            let by = silence::decide(
                &matchers,
                &t.invariant_id,
                t.kind,
                subjects.as_deref(),
                pending,
            );
            let payload = (by.is_none() && self.webhook).then(|| {
                // Slack heard nothing of this incident yet: a reminder is its first message.
                let first = pending.is_some_and(|p| !p.announced_firing);
                let t = Transition {
                    reminder: t.reminder && !first,
                    ..t.clone()
                };
                self.invariant_payload(&registry, staged, ctx, &t)
            });
            transitions.push(PlannedAlert {
                silenced_by: by,
                payload,
            });
        }
        for (i, t) in staged.blind.transitions.iter().enumerate() {
            let pending = ctx.pending.get(&t.invariant_id).map(view);
            let by = silence::decide(&matchers, &t.invariant_id, t.kind, None, pending);
            let payload = (by.is_none() && self.webhook).then(|| {
                let left = staged.blind.left.get(i).and_then(Option::as_ref);
                self.blind_payload(staged, t, left)
            });
            transitions.push(PlannedAlert {
                silenced_by: by,
                payload,
            });
        }
        let releases = ctx
            .pending
            .iter()
            .filter(|(id, _)| {
                !staged
                    .transitions
                    .iter()
                    .chain(&staged.blind.transitions)
                    .any(|t| &t.invariant_id == *id)
            })
            .filter_map(|(id, p)| {
                let state = staged
                    .states
                    .iter()
                    .chain(&staged.blind.states)
                    .find(|s| &s.invariant_id == id)?;
                let now = match (state.state, state.firing) {
                    (Outcome::Red, true) => Some(Now::Firing),
                    (Outcome::Green, false) => Some(Now::Clear),
                    _ => None,
                };
                let subjects = self.subjects(staged, ctx, id, TransitionKind::Fired);
                let kind = silence::release(&matchers, id, view(p), now, subjects.as_deref())?;
                let payload = self
                    .webhook
                    .then(|| self.release_payload(&registry, staged, ctx, state, p, kind));
                Some(Release {
                    transition_id: p.transition_id,
                    invariant_id: id.clone(),
                    kind,
                    payload,
                })
            })
            .collect();
        AlertPlan {
            transitions,
            releases,
        }
    }

    /// The subjects a matcher's glob is checked against (see `alert::silence`): this cycle's
    /// violating subjects for a fire (`None` when the evidence was capped), the closed episodes'
    /// for a resolve; none for a blind source.
    fn subjects<'s>(
        &self,
        staged: &'s Staged,
        ctx: &'s AlertContext<'_>,
        id: &str,
        kind: TransitionKind,
    ) -> Option<Vec<&'s str>> {
        if blind::source_of(id).is_some() {
            return None;
        }
        match kind {
            TransitionKind::Fired => {
                let own: Vec<&str> = staged
                    .eval
                    .violations
                    .iter()
                    .filter(|v| v.invariant_id == id)
                    .map(|v| v.subject.as_str())
                    .collect();
                let total = staged.eval.violation_counts.get(id).copied().unwrap_or(0);
                (u64::try_from(own.len()).unwrap_or(u64::MAX) >= total).then_some(own)
            }
            TransitionKind::Resolved => Some(
                ctx.closed
                    .get(id)
                    .map(|c| c.iter().map(|e| e.subject.as_str()).collect())
                    .unwrap_or_default(),
            ),
        }
    }

    /// The violation ids a message about `id` summarises: this cycle's episodes of it for a
    /// fire, the episodes it closed for a resolve.
    fn ids(staged: &Staged, ctx: &AlertContext<'_>, id: &str, kind: TransitionKind) -> Vec<i64> {
        match kind {
            TransitionKind::Fired => staged
                .eval
                .violations
                .iter()
                .zip(ctx.violation_ids)
                .filter(|(v, _)| v.invariant_id == id)
                .map(|(_, i)| *i)
                .collect(),
            TransitionKind::Resolved => ctx
                .closed
                .get(id)
                .map(|c| c.iter().map(|e| e.id).collect())
                .unwrap_or_default(),
        }
    }

    fn invariant_payload(
        &self,
        registry: &Registry<'_>,
        staged: &Staged,
        ctx: &AlertContext<'_>,
        t: &Transition,
    ) -> Value {
        // The registry knows built-in and custom invariants alike; an id it does not know (a
        // custom invariant removed from the configuration) still gets its message.
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
        let payload =
            slack::payload_with_total(t, &staged.eval.violations, total, staged.taken_at_ms, meta);
        let ids = Self::ids(staged, ctx, &t.invariant_id, t.kind);
        slack::with_origin(
            &payload,
            slack::Origin {
                instance: &self.instance,
                violation_ids: &ids,
            },
        )
    }

    /// Fired: this cycle's error and unreadable run; resolved: the run the source just left.
    fn blind_payload(
        &self,
        staged: &Staged,
        t: &Transition,
        left: Option<&InvariantState>,
    ) -> Value {
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
            TransitionKind::Resolved => left,
        };
        let facts = blind_alert::Blind {
            source: name,
            error,
            cycles: run.map_or(0, |s| s.consecutive),
            since_ms: run.map_or(t.at_ms, |s| s.since_ms),
        };
        let payload = blind_alert::payload(t, &facts, staged.taken_at_ms);
        slack::with_origin(
            &payload,
            slack::Origin {
                instance: &self.instance,
                violation_ids: &[],
            },
        )
    }

    /// The one message sent when a silence ends with Slack out of date: a fired message with
    /// this cycle's evidence, or a resolved one, noting the silence.
    fn release_payload(
        &self,
        registry: &Registry<'_>,
        staged: &Staged,
        ctx: &AlertContext<'_>,
        state: &InvariantState,
        pending: &crate::store::Pending,
        kind: TransitionKind,
    ) -> Value {
        let t = Transition {
            invariant_id: state.invariant_id.clone(),
            kind,
            severity: match kind {
                TransitionKind::Fired => state.severity.unwrap_or(pending.severity),
                TransitionKind::Resolved => pending.severity,
            },
            at_ms: staged.taken_at_ms,
            previous_at_ms: match kind {
                TransitionKind::Fired => None,
                TransitionKind::Resolved => state.last_fired_at_ms,
            },
            reminder: false,
        };
        let payload = if blind::source_of(&t.invariant_id).is_some() {
            let left = (kind == TransitionKind::Resolved).then_some(state);
            self.blind_payload(staged, &t, left)
        } else {
            self.invariant_payload(registry, staged, ctx, &t)
        };
        let what = match kind {
            TransitionKind::Fired => "still red now that it is over",
            TransitionKind::Resolved => "resolved while silenced",
        };
        let note = format!(
            "{} at {} by {}; {what}",
            match pending.kind {
                TransitionKind::Fired => "silenced when it fired",
                TransitionKind::Resolved => "silenced when it resolved",
            },
            format_ms(pending.at_ms),
            slack::escape(&pending.silenced_by),
        );
        slack::with_note(&payload, &note, "🔕")
    }
}

fn view(p: &crate::store::Pending) -> PendingView<'_> {
    PendingView {
        kind: p.kind,
        silenced_by: &p.silenced_by,
        announced_firing: p.announced_firing,
    }
}

//! Text renderings for the terminal: cycle results, violation history, the catalog (text and
//! the Markdown that becomes INVARIANTS.md). Pure string building; `crate::report::print` writes them.

use std::fmt::Write as _;

use canary_invariants::{CATALOG, Need, Outcome, Params};

use crate::clock::format_ms;
use crate::config::CustomInvariant;
use crate::cycle::CycleResult;
use crate::registry::Registry;
use crate::store::StoredViolation;

// The one stdout writer, re-exported so callers of the renderings find it beside them.
pub use crate::report::print;

/// A cycle result for humans; `registry` names the invariants (custom ones included).
pub fn cycle_text(r: &CycleResult, registry: &Registry<'_>) -> String {
    let mut s = String::new();
    let cycle = r
        .cycle_id
        .map_or_else(|| "not persisted".to_owned(), |id| format!("cycle {id}"));
    let _ = writeln!(
        s,
        "canary check: {} at {} ({:.1} ms, {cycle})",
        r.verdict().as_str().to_uppercase(),
        r.taken_at,
        r.duration_ms
    );
    for (id, outcome) in &r.outcomes {
        let name = registry.find(id).map_or("", |d| d.name());
        let detail = match outcome {
            Outcome::Red => match r.violation_counts.get(id) {
                Some(c) if c.shown < c.total => {
                    format!("{} violation(s), {} shown", c.total, c.shown)
                }
                Some(c) => format!("{} violation(s)", c.total),
                None => "violation(s) not counted".to_owned(),
            },
            Outcome::Unknown => r
                .diagnostics
                .unknown_reasons
                .get(id)
                .cloned()
                .unwrap_or_default(),
            Outcome::Green => String::new(),
        };
        let line = format!("  {id:<5} {name:<26} {:<8} {detail}", outcome.as_str());
        let _ = writeln!(s, "{}", line.trim_end());
    }
    // Not run by choice (an optional source left out of the configuration), not a failure.
    for (id, reason) in &r.not_configured {
        let name = registry.find(id).map_or("", |d| d.name());
        let line = format!("  {id:<5} {name:<26} {:<8} {reason}", "n/a");
        let _ = writeln!(s, "{}", line.trim_end());
    }
    if !r.violations.is_empty() {
        let _ = writeln!(s, "violations:");
        for v in &r.violations {
            let v = &v.violation;
            let _ = writeln!(
                s,
                "  [{} {}] {}: {}",
                v.invariant_id, v.severity, v.subject, v.summary
            );
        }
    }
    for t in r.transitions.iter().chain(&r.blind.transitions) {
        let silenced = t
            .silenced_by
            .as_deref()
            .map_or_else(String::new, |by| format!(", silenced by {by}: not sent"));
        let _ = writeln!(
            s,
            "transition: {} {} ({}{silenced})",
            t.invariant_id, t.kind, t.severity
        );
    }
    for a in &r.released {
        let _ = writeln!(
            s,
            "released: {} {} (its silence is over: sent now)",
            a.invariant_id, a.kind
        );
    }
    for u in &r.sources_unavailable {
        let cycles = r
            .blind
            .sources
            .iter()
            .find(|b| b.source == u.source.as_str())
            .map_or(1, |b| b.unreadable_cycles);
        let _ = writeln!(
            s,
            "source unavailable: {}: {} ({cycles} consecutive cycle(s); blind alert after {})",
            u.source.as_str(),
            u.error,
            r.blind.blind_after
        );
    }
    if !r.diagnostics.skipped_tables.is_empty() {
        let _ = writeln!(
            s,
            "skipped tables: {}",
            r.diagnostics.skipped_tables.join(", ")
        );
    }
    for a in &r.diagnostics.anomalies {
        let _ = writeln!(
            s,
            "anomaly: {} {}: {}",
            a.source.as_str(),
            a.subject,
            a.note
        );
    }
    s
}

/// Stored violation episodes for humans: id, first seen, open or closed, cycles, evidence.
pub fn violations_text(rows: &[StoredViolation], total: u64) -> String {
    let mut s = String::new();
    for v in rows {
        let status = match v.closed_at_ms {
            Some(at) => format!("closed {}", format_ms(at)),
            None => "open".to_owned(),
        };
        let _ = writeln!(
            s,
            "#{:<6} {} [{} {}] {}: {} ({status}, {} cycle(s))",
            v.id,
            format_ms(v.first_seen_ms),
            v.invariant_id,
            v.severity,
            v.subject,
            v.summary,
            v.cycles
        );
    }
    let _ = writeln!(s, "{} shown, {total} matching", rows.len());
    s
}

/// Silences for humans: one line each, then the count.
pub fn silences_text(rows: &[crate::store::Silence]) -> String {
    let mut s = String::new();
    for v in rows {
        let state = match v.state {
            crate::store::SilenceState::Pending => "pending",
            crate::store::SilenceState::Active => "active",
            crate::store::SilenceState::Expired => "expired",
        };
        let subject = v
            .subject
            .as_deref()
            .map_or_else(String::new, |g| format!(" subject {g:?}"));
        let end = v.expired_at.as_deref().unwrap_or(&v.ends_at);
        let _ = writeln!(
            s,
            "#{:<4} {state:<8} {}{subject} from {} to {end} by {}: {}",
            v.id,
            v.invariant_ids.join(","),
            v.starts_at,
            v.author,
            v.comment
        );
    }
    let _ = writeln!(s, "{} silence(s)", rows.len());
    s
}

/// The catalog for humans (rules with this configuration's thresholds), then the configured
/// custom invariants (marked `custom`); disabled ones are marked so.
pub fn catalog_text(registry: &Registry<'_>) -> String {
    let mut s = String::new();
    for d in registry.all() {
        let custom = if d.is_custom() { ", custom" } else { "" };
        let disabled = if registry.enabled(&d) {
            ""
        } else {
            ", disabled"
        };
        let _ = writeln!(
            s,
            "{}  {} (tier {}, {}{custom}{disabled})",
            d.id(),
            d.name(),
            d.tier(),
            d.severity()
        );
        let _ = writeln!(s, "      {}", registry.rule(&d));
    }
    s
}

/// Custom invariants as Markdown, appended to the catalog by `canary invariants --format
/// markdown` when a configuration defines some (INVARIANTS.md itself is the built-in catalog).
pub fn custom_markdown(custom: &[&CustomInvariant]) -> String {
    let mut s = String::new();
    if custom.is_empty() {
        return s;
    }
    let _ = writeln!(s, "\n## Custom invariants (from the configuration)\n");
    let _ = writeln!(s, "| id | name | tier | severity |\n|---|---|---|---|");
    for c in custom {
        let _ = writeln!(s, "| {} | {} | {} | {} |", c.id, c.name, c.tier, c.severity);
    }
    s
}

/// The catalog as Markdown, with the default thresholds (the content of INVARIANTS.md).
pub fn catalog_markdown() -> String {
    let mut s = String::from(
        "# Invariant catalog\n\nGenerated by `canary invariants --format markdown`; do not edit.\n",
    );
    let defaults = Params::default();
    let mut invariants: Vec<_> = CATALOG.to_vec();
    invariants.sort_by_key(|i| i.meta().id);
    let _ = writeln!(s, "\n| id | name | tier | severity |\n|---|---|---|---|");
    for i in &invariants {
        let m = i.meta();
        let _ = writeln!(s, "| {} | {} | {} | {} |", m.id, m.name, m.tier, m.severity);
    }
    for i in invariants {
        let m = i.meta();
        let needs: Vec<String> = m
            .needs
            .iter()
            .map(|n| match n {
                Need::Source(source) => source.as_str().to_owned(),
                Need::Field(field) => field.default_name().to_owned(),
            })
            .collect();
        let _ = write!(
            s,
            "\n## {} {}\n\n- **Tier** {} · **severity** {} · **needs** {}\n- **Rule.** {}\n\
             - **Guards against.** {}\n- **Runbook.** {}\n",
            m.id,
            m.name,
            m.tier,
            m.severity,
            needs.join(", "),
            i.rule(&defaults),
            m.guards,
            m.runbook
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_invariants_md_matches_the_catalog() {
        let committed = include_str!("../../INVARIANTS.md");
        assert_eq!(
            committed.trim_end(),
            catalog_markdown().trim_end(),
            "INVARIANTS.md is stale: run `cargo run -- invariants --format markdown > INVARIANTS.md`"
        );
    }
}

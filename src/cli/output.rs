//! Text renderings for the terminal: cycle results, violation history, the catalog (text and
//! the Markdown that becomes INVARIANTS.md). Pure string building; `print` is the only writer.

use std::fmt::Write as _;

use canary_invariants::{CATALOG, Need, Outcome};

use crate::clock::format_ms;
use crate::config::CustomInvariant;
use crate::cycle::CycleResult;
use crate::store::StoredViolation;

/// Writes a report to stdout (the one place the CLI prints results).
#[allow(
    clippy::print_stdout,
    reason = "the CLI's reports go to stdout by design"
)]
pub fn print(text: &str) {
    println!("{}", text.trim_end());
}

/// A cycle result for humans.
pub fn cycle_text(r: &CycleResult) -> String {
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
        // Custom invariants are not in the catalog; their name is in the configuration.
        let name = canary_invariants::catalog::find(id).map_or("(custom)", |i| i.meta().name);
        let count = r
            .violations
            .iter()
            .filter(|v| &v.violation.invariant_id == id)
            .count();
        let detail = match outcome {
            Outcome::Red => format!("{count} violation(s)"),
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
    for t in &r.transitions {
        let _ = writeln!(
            s,
            "transition: {} {} ({})",
            t.invariant_id, t.kind, t.severity
        );
    }
    for u in &r.sources_unavailable {
        let _ = writeln!(s, "source unavailable: {}: {}", u.source.as_str(), u.error);
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

/// Stored violations for humans.
pub fn violations_text(rows: &[StoredViolation], total: u64) -> String {
    let mut s = String::new();
    for v in rows {
        let _ = writeln!(
            s,
            "#{:<6} {} [{} {}] {}: {}",
            v.id,
            format_ms(v.taken_at_ms),
            v.invariant_id,
            v.severity,
            v.subject,
            v.summary
        );
    }
    let _ = writeln!(s, "{} shown, {total} matching", rows.len());
    s
}

/// The catalog for humans, then the configured custom invariants (marked `custom`).
pub fn catalog_text(custom: &[&CustomInvariant]) -> String {
    let mut s = String::new();
    for inv in CATALOG {
        let m = inv.meta();
        let _ = writeln!(s, "{}  {} (tier {}, {})", m.id, m.name, m.tier, m.severity);
        let _ = writeln!(s, "      {}", m.rule);
    }
    for c in custom {
        let disabled = if c.enabled { "" } else { ", disabled" };
        let _ = writeln!(
            s,
            "{}  {} (tier {}, {}, custom{disabled})",
            c.id, c.name, c.tier, c.severity
        );
        let _ = writeln!(s, "      custom SQL: every row returned is one violation");
    }
    s
}

/// A custom invariant as JSON, shaped like a catalog entry plus `"custom": true` and its SQL
/// (`canary invariants --format json`, `GET /api/canary/invariants`).
pub fn custom_json(c: &CustomInvariant) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "name": c.name,
        "tier": c.tier,
        "severity": c.severity,
        "runbook": c.runbook,
        "rule": "custom SQL: every row returned is one violation",
        "sql": c.sql,
        "enabled": c.enabled,
        "custom": true,
    })
}

/// The catalog as JSON, then the custom invariants.
pub fn catalog_json(custom: &[&CustomInvariant]) -> serde_json::Result<String> {
    let mut entries: Vec<serde_json::Value> = CATALOG
        .iter()
        .map(|i| serde_json::to_value(i.meta()))
        .collect::<serde_json::Result<_>>()?;
    entries.extend(custom.iter().map(|c| custom_json(c)));
    serde_json::to_string_pretty(&entries)
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

/// The catalog as Markdown (the content of INVARIANTS.md).
pub fn catalog_markdown() -> String {
    let mut s = String::from(
        "# Invariant catalog\n\nGenerated by `canary invariants --format markdown`; do not edit.\n",
    );
    let mut metas: Vec<_> = CATALOG.iter().map(|i| i.meta()).collect();
    metas.sort_by_key(|m| m.id);
    let _ = writeln!(s, "\n| id | name | tier | severity |\n|---|---|---|---|");
    for m in &metas {
        let _ = writeln!(s, "| {} | {} | {} | {} |", m.id, m.name, m.tier, m.severity);
    }
    for m in metas {
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
            m.rule,
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

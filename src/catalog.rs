//! The invariant catalog as JSON, shared by `canary invariants --format json` and
//! `GET /api/canary/invariants`: the built-in metadata of `canary-invariants`, then the custom
//! SQL invariants of the configuration, shaped like catalog entries.
//!
//! Pure value building. It must not read configuration files or print: callers pass what they
//! loaded and render the result themselves.

use canary_invariants::CATALOG;

use crate::config::CustomInvariant;

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

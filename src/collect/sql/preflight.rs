//! The custom-SQL preflight: prepares each configured custom invariant's statement against the
//! platform database (opened read-only, as the collector opens it) and asks SQLite whether it is
//! one read-only query, so a write or a typo is refused at startup rather than at the first
//! cycle. It is I/O, so it lives beside the collector and not in `config` (whose validation is
//! pure); the CLI runs it right after `config::validate` wherever a configuration is loaded for
//! use. The statements are checked again before every run anyway (see [`super::custom`]).
//!
//! It must not change what it is given nor report an entry that already has a problem of its
//! own (those are listed by `config::validate`).

use super::custom::check_statement;
use super::sqlite::open_read_only;
use crate::config::Config;
use crate::config::Problem;
use crate::config::custom::statements_to_preflight;

/// Problems of the custom statements against the platform database, in configuration order.
/// Skipped, with a warning, when the database cannot be opened now: an unreachable platform at
/// startup is not a configuration error.
pub fn preflight(config: &Config) -> Vec<Problem> {
    let entries = statements_to_preflight(config);
    let mut out = Vec::new();
    if entries.is_empty() {
        return out;
    }
    let platform = &config.platform;
    let conn = match open_read_only(&platform.sqlite_path, platform.sqlite_busy_timeout) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(
                path = %platform.sqlite_path.display(),
                error = %error,
                "platform database cannot be opened now: custom invariant SQL was not checked \
                 against it (it is checked again before every run)"
            );
            return out;
        }
    };
    for (label, entry) in entries {
        if let Err(error) = check_statement(&conn, &entry.sql) {
            out.push(Problem::new(
                format!("{label}.sql"),
                format!("{} ({}): {error}", entry.id, entry.name),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use canary_invariants::{Severity, Tier};

    use super::*;
    use crate::config::{CustomInvariant, validate};

    #[test]
    fn sql_is_checked_against_the_platform_database_when_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let mut config = Config::default();
        config.platform.sqlite_path = db;
        let entry = |id: &str, sql: &str| CustomInvariant {
            id: id.to_owned(),
            name: format!("name of {id}"),
            tier: Tier::B,
            severity: Severity::Minor,
            runbook: String::new(),
            sql: sql.to_owned(),
            enabled: true,
            row_limit: None,
            timeout: None,
        };
        config.custom_invariants = vec![
            entry("C-01", "SELECT x FROM t"),
            entry("C-02", "DELETE FROM t"),
            entry("C-03", "SELECT y FROM t"),
        ];
        // `validate` then `preflight`, as the CLI runs them.
        let mut problems = validate(&config);
        problems.extend(preflight(&config));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].path, "custom_invariants[1].sql");
        assert!(
            problems[0]
                .message
                .starts_with("C-02 (name of C-02): sql is not read-only"),
            "{problems:?}"
        );
        assert!(
            problems[1].message.contains("no such column: y"),
            "{problems:?}"
        );

        // Unreachable database: the SQL check is skipped (warned), nothing else fails.
        config.platform.sqlite_path = dir.path().join("missing.db");
        assert!(validate(&config).is_empty());
        assert!(preflight(&config).is_empty());
    }
}

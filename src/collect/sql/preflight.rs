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
use super::reader::{Conn, Dialect, Reader};
use super::sqlite::open_read_only;
use crate::config::custom::{CustomInvariant, statements_to_preflight};
use crate::config::platform::PlatformDatabase;
use crate::config::{Config, Problem, Secret};

/// The PostgreSQL preflight: the role, then each statement prepared in its wrapped form, all in
/// one read-only transaction that is rolled back.
fn preflight_postgres(
    config: &Config,
    url: &Secret,
    entries: Vec<(String, &CustomInvariant)>,
) -> Vec<Problem> {
    let platform = &config.platform;
    let mut out = Vec::new();
    let mut client = match super::postgres::connect(platform, url) {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(
                error = %error,
                "platform database cannot be reached now: its role and the custom invariant SQL \
                 were not checked (both are checked again on every read)"
            );
            return out;
        }
    };
    let mut reader = Reader::new(Conn::Postgres(&mut client));
    let role = reader.in_read_transaction(|r| {
        debug_assert_eq!(r.dialect(), Dialect::Postgres);
        super::postgres::read_catalog_and_role(r, platform)
    });
    match role {
        Ok((_, role)) if role.can_write() && !platform.allow_write_role => {
            out.push(Problem::new(
                "platform.database_url",
                format!(
                    "refusing a write-capable role: {}",
                    role.refusal(&platform.schema)
                ),
            ));
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(error = %error, "the PostgreSQL role could not be checked now")
        }
    }
    if entries.is_empty() {
        return out;
    }
    if let Err(error) = client.batch_execute(Dialect::Postgres.begin()) {
        tracing::warn!(error = %error, "custom invariant SQL was not checked against PostgreSQL");
        return out;
    }
    for (label, entry) in entries {
        // Each check in its own savepoint: one failing prepare must not abort the others.
        let checked = client
            .batch_execute("SAVEPOINT canary_preflight")
            .map_err(|e| super::custom::StatementError::Prepare(e.to_string()))
            .and_then(|()| super::custom_postgres::check_statement(&mut client, &entry.sql));
        let _ = client.batch_execute("ROLLBACK TO SAVEPOINT canary_preflight");
        if let Err(error) = checked {
            out.push(Problem::new(
                format!("{label}.sql"),
                format!("{} ({}): {error}", entry.id, entry.name),
            ));
        }
    }
    let _ = client.batch_execute("ROLLBACK");
    out
}

/// Problems of the custom statements against the platform database, in configuration order;
/// on PostgreSQL, first the role check (a write-capable role is refused unless
/// `platform.allow_write_role`). Skipped, with a warning, when the database cannot be reached
/// now: an unreachable platform at startup is not a configuration error (the role is checked
/// again on every read, and the statements before every run).
pub fn preflight(config: &Config) -> Vec<Problem> {
    let entries = statements_to_preflight(config);
    let mut out = Vec::new();
    let platform = &config.platform;
    let path = match platform.database() {
        Ok(PlatformDatabase::Sqlite(path)) => path,
        // The sync client runs its own runtime, which must not nest in the caller's (the CLI
        // calls this from async code): a plain thread of its own, joined at once.
        Ok(PlatformDatabase::Postgres(url)) => {
            return std::thread::scope(|scope| {
                scope
                    .spawn(|| preflight_postgres(config, &url, entries))
                    .join()
                    .unwrap_or_else(|_| {
                        tracing::warn!("the PostgreSQL preflight failed internally; skipped");
                        Vec::new()
                    })
            });
        }
        // Reported by `config::validate` (or unreadable URL file: said when reading).
        Err(_) => return out,
    };
    if entries.is_empty() {
        return out;
    }
    let conn = match open_read_only(&path, platform.sqlite_busy_timeout) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
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

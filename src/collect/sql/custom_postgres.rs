//! Operator-defined SQL invariants on PostgreSQL: the same contract as on SQLite
//! ([`super::custom`]: one `SELECT`/`WITH`/`VALUES`, prepared at validation, a row limit, a time
//! limit per entry, results as JSON), enforced by the server's own rules:
//!
//! - the statement is only ever sent wrapped as a subquery, `SELECT … FROM (<sql>) AS q(c1, …)`,
//!   through the extended protocol. A second statement is then a syntax error (and the protocol
//!   refuses several commands in one prepared statement anyway), `INSERT`/`UPDATE`/`DELETE` are
//!   not subqueries, and a data-modifying `WITH` is refused by PostgreSQL below the top level: a
//!   write is refused when it is prepared (at validation and every cycle), never executed;
//! - everything runs inside one `REPEATABLE READ READ ONLY` transaction of a session whose
//!   default is read-only too (`super::postgres::connect`), with the role check of the built-in
//!   read;
//! - each entry runs under its own savepoint with `SET LOCAL statement_timeout`, so a runaway
//!   query is cancelled by the server and only that entry becomes *unknown*;
//! - rows come back as `row_to_json` text, read here into the same JSON as on SQLite.
//!
//! It must not run a statement that was not prepared in its wrapped form first.

use canary_invariants::CustomRow;
use postgres::Client;
use serde_json::Value;

use super::custom::{CustomOutcome, StatementError, first_keyword, truncate_text};
use super::error::postgres_message;
use crate::config::Secret;
use crate::config::custom::CustomSpec;
use crate::config::platform::PlatformConfig;

/// SQLSTATE of a statement cancelled by `statement_timeout`.
const QUERY_CANCELED: &str = "57014";

/// `sql` without a trailing `;` (and the blanks around it), ready to be wrapped.
fn body(sql: &str) -> &str {
    let trimmed = sql.trim_end();
    trimmed.strip_suffix(';').unwrap_or(trimmed).trim_end()
}

/// Prepares `sql` wrapped as a subquery and checks it is one query (see the module docs); the
/// column names, made unique as on SQLite.
pub fn check_statement(client: &mut Client, sql: &str) -> Result<Vec<String>, StatementError> {
    if sql.trim().is_empty() {
        return Err(StatementError::Empty);
    }
    let keyword = first_keyword(sql).ok_or(StatementError::Empty)?;
    if !matches!(keyword.as_str(), "SELECT" | "WITH" | "VALUES") {
        return Err(StatementError::NotSelect);
    }
    // The newline ends a trailing `--` comment before the closing parenthesis.
    let wrapped = format!("SELECT * FROM ({}\n) AS canary_custom", body(sql));
    let statement = client.prepare(&wrapped).map_err(|e| {
        let message = postgres_message(&e);
        if body(sql).contains(';') && message.contains("syntax error") {
            StatementError::Multiple
        } else if message.contains("data-modifying") {
            StatementError::NotReadOnly
        } else {
            StatementError::Prepare(message)
        }
    })?;
    let mut names: Vec<String> = Vec::new();
    for column in statement.columns() {
        let mut candidate = column.name().to_owned();
        let mut n = 2;
        while names.contains(&candidate) {
            candidate = format!("{}_{n}", column.name());
            n += 1;
        }
        names.push(candidate);
    }
    if names.is_empty() {
        return Err(StatementError::NotSelect);
    }
    Ok(names)
}

/// Runs every spec on the platform's PostgreSQL (blocking). When no session or transaction can
/// be had, every result carries the reason (outcome *unknown*).
pub fn run_blocking(
    platform: &PlatformConfig,
    url: &Secret,
    specs: &[CustomSpec],
) -> CustomOutcome {
    let mut outcome = CustomOutcome::default();
    let mut client = match super::postgres::connect(platform, url) {
        Ok(client) => client,
        Err(error) => {
            super::custom::fail_all(&mut outcome, specs, &error.to_string());
            return outcome;
        }
    };
    outcome.statements += 1;
    if let Err(error) = client.batch_execute(super::reader::Dialect::Postgres.begin()) {
        let reason = format!(
            "cannot begin a read transaction: {}",
            postgres_message(&error)
        );
        super::custom::fail_all(&mut outcome, specs, &reason);
        return outcome;
    }
    for spec in specs {
        let run = run_one(&mut client, spec, &mut outcome.statements);
        outcome.push(spec, run);
    }
    outcome.statements += 1;
    // Reads are done; a failed COMMIT loses nothing (the session closes right after).
    if let Err(error) = client.batch_execute("COMMIT") {
        tracing::debug!(error = %postgres_message(&error), "ending the custom read transaction");
    }
    outcome
}

/// One entry under its savepoint and time limit.
fn run_one(
    client: &mut Client,
    spec: &CustomSpec,
    statements: &mut u32,
) -> Result<(Vec<CustomRow>, bool), String> {
    let limit_ms = u64::try_from(spec.timeout.as_millis()).unwrap_or(u64::MAX);
    *statements += 2;
    client
        .batch_execute(&format!(
            "SAVEPOINT canary_custom; SET LOCAL statement_timeout = {}",
            limit_ms.max(1)
        ))
        .map_err(|e| format!("query failed: {}", postgres_message(&e)))?;
    let result = read_rows(client, spec, statements);
    // Back to the savepoint either way: a failed entry must not abort the others, and the time
    // limit must not outlive its entry.
    *statements += 1;
    let restored = client.batch_execute("ROLLBACK TO SAVEPOINT canary_custom");
    let rows = result.map_err(|error| match error {
        RunError::Statement(e) => format!("statement rejected: {e}"),
        RunError::Query(e) if e.code().map(|c| c.code()) == Some(QUERY_CANCELED) => format!(
            "interrupted: exceeded its time limit of {}",
            humantime::format_duration(spec.timeout)
        ),
        RunError::Query(e) => format!("query failed: {}", postgres_message(&e)),
        RunError::Row(e) => format!("unreadable row: {e}"),
    })?;
    restored.map_err(|e| format!("query failed: {}", postgres_message(&e)))?;
    Ok(rows)
}

enum RunError {
    Statement(StatementError),
    Query(postgres::Error),
    Row(String),
}

fn read_rows(
    client: &mut Client,
    spec: &CustomSpec,
    statements: &mut u32,
) -> Result<(Vec<CustomRow>, bool), RunError> {
    *statements += 1;
    let names = check_statement(client, &spec.sql).map_err(RunError::Statement)?;
    let aliases: Vec<String> = (1..=names.len()).map(|i| format!("c{i}")).collect();
    let limit = usize::try_from(spec.row_limit).unwrap_or(usize::MAX);
    // Positional aliases keep every column, whatever its name (duplicates included).
    let sql = format!(
        "SELECT row_to_json(q)::text FROM ({}\n) AS q({}) LIMIT {}",
        body(&spec.sql),
        aliases.join(", "),
        u64::from(spec.row_limit) + 1
    );
    *statements += 1;
    let rows = client.query(&sql, &[]).map_err(RunError::Query)?;
    let truncated = rows.len() > limit;
    let mut out = Vec::with_capacity(rows.len().min(limit));
    for row in rows.into_iter().take(limit) {
        let text: String = row.try_get(0).map_err(|e| RunError::Row(e.to_string()))?;
        let Value::Object(mut object) =
            serde_json::from_str(&text).map_err(|e| RunError::Row(e.to_string()))?
        else {
            return Err(RunError::Row("not a JSON object".to_owned()));
        };
        let mut map = CustomRow::new();
        for (alias, name) in aliases.iter().zip(&names) {
            let value = object.remove(alias).unwrap_or(Value::Null);
            map.insert(name.clone(), shorten(value));
        }
        out.push(map);
    }
    Ok((out, truncated))
}

/// Long text is cut as on SQLite (evidence, not a dump).
fn shorten(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(truncate_text(text)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_semicolon_is_not_a_second_statement() {
        assert_eq!(body("SELECT 1;  \n"), "SELECT 1");
        assert_eq!(body("SELECT 1"), "SELECT 1");
        assert_eq!(body("SELECT 1; DELETE FROM t"), "SELECT 1; DELETE FROM t");
    }

    #[test]
    fn long_text_is_cut_and_other_json_kept() {
        let long = "x".repeat(5000);
        let Value::String(cut) = shorten(Value::String(long)) else {
            panic!("a string stays a string");
        };
        assert!(cut.chars().count() <= 1001);
        assert_eq!(shorten(serde_json::json!(3)), serde_json::json!(3));
    }
}

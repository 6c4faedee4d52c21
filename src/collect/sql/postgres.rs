//! The PostgreSQL dialect, sibling of `sqlite`: the session (URL, TLS, timeouts, read-only
//! defaults), the statement runners the `reader::Reader` calls, and the
//! catalog query (`pg_catalog`), which also reads the role's write privileges so a
//! write-capable role is refused on every read, not only at startup.
//!
//! Why the simple query protocol: one round trip per statement, and every value arrives as text
//! whatever its declared type (`text`, `timestamptz`, `uuid`, `boolean`, integers), which the
//! shared `value` functions already read. Parameters are inlined as literals quoted by
//! `postgres_protocol::escape::escape_literal`; the statements are canary's own, with `?` only as
//! placeholders (identifiers are checked plain identifiers, literals hold no `?`). The streamed
//! reads (`each_row`: executions, schedules, roster, cascades) run the same statement as
//! `COPY (…) TO STDOUT`, whose text format carries the same text one row per message (see
//! `copy_text`), so no whole result is ever held.
//!
//! The session is opened per collection (a cycle every few minutes: a reconnect is free and a
//! restarted server is simply picked up) with `application_name=canary`, a connect timeout,
//! `default_transaction_read_only`, `statement_timeout`, `lock_timeout`,
//! `idle_in_transaction_session_timeout`, `search_path` set to the configured schema,
//! `TimeZone=UTC` (naive timestamps are UTC, as in DESIGN §4) and `jit=off`: the cycle's reads
//! are planned above `jit_above_cost` at 1 M rows, and compiling them took 70–90 ms of a
//! ~600 ms executions statement (up to 2 s with inlining) to save less than that
//! (benches/RESULTS.md).
//!
//! It must not write, and must not let the URL (a secret) reach a message.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};

use super::error::SqlError;
use super::query::placeholders;
use super::reader::Reader;
use super::schema::{Catalog, TableInfo};
use super::value::{Cell, CellRef, cells, value_text};
use crate::config::Secret;
use crate::config::platform::PlatformConfig;

/// Prefix the catalog query puts before a column that leads an index (`chr(1)`).
const INDEXED: char = '\u{1}';
/// The catalog row describing the session's role (`chr(3)` in the column position).
const ROLE: &str = "\u{3}";
/// Prefix before a column that leads any valid index, full or partial (`chr(4)`); the row's
/// type position then carries the index's collation (see [`bytewise_collation`]).
const RANGE_INDEXED: char = '\u{4}';

/// How to compare a column so that PostgreSQL can range-scan an index it leads, when that
/// index orders bytewise; `None` when it does not (a linguistic collation: a range in `C`
/// order is then no range of the index, and canary keeps comparing in `C`, scanning).
///
/// `tag` is what the catalog query reports for the index's first column: `-` for a type
/// without collation (timestamps: any range is an index range, nothing to name), the
/// collation's name, or `default:<datcollate>` for the database's default. `C.UTF-8` orders
/// by code point, which for UTF-8 is byte order.
fn bytewise_collation(tag: &str) -> Option<&'static str> {
    const C_LIKE: [&str; 6] = ["C", "POSIX", "ucs_basic", "C.UTF-8", "C.utf8", "pg_c_utf8"];
    let c_like = |name: &str| C_LIKE.iter().copied().find(|c| *c == name);
    match tag {
        "-" => Some(""),
        _ => c_like(tag).or_else(|| {
            tag.strip_prefix("default:")
                .and_then(c_like)
                .map(|_| "default")
        }),
    }
}

/// Opens a session on the platform's PostgreSQL for `url` (see the module docs for its
/// settings). Blocking: call from a blocking thread, never from an async task.
pub fn connect(cfg: &PlatformConfig, url: &Secret) -> Result<Client, SqlError> {
    let (mut config, tls) = parse_url(url.expose())?;
    let statement_ms = millis(cfg.postgres_statement_timeout);
    config
        .application_name("canary")
        .connect_timeout(cfg.postgres_connect_timeout)
        .options(&format!(
            "-c default_transaction_read_only=on -c statement_timeout={statement_ms} \
             -c lock_timeout={statement_ms} -c idle_in_transaction_session_timeout={idle} \
             -c search_path=\"{schema}\" -c TimeZone=UTC -c standard_conforming_strings=on \
             -c jit=off",
            idle = statement_ms.saturating_mul(3).max(10_000),
            schema = cfg.schema,
        ));
    let connected = match tls {
        Tls::Off => config.connect(NoTls),
        Tls::Verified => {
            let tls = tls_config(cfg)?;
            config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        }
    };
    connected.map_err(|e| SqlError::Connect(super::error::postgres_message(&e)))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether the session is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    /// `sslmode=disable`.
    Off,
    /// Any other mode: rustls, certificate and host name always verified.
    Verified,
}

/// The driver's configuration for `url`, and the TLS it asks for. The driver knows only
/// `disable`/`prefer`/`require`; libpq's `verify-ca`/`verify-full` (the modes an operator should
/// use) are mapped here. canary never accepts an unverified certificate: `require` and `prefer`
/// verify too (stricter than libpq; a private CA goes in `platform.postgres_ca_file`).
fn parse_url(url: &str) -> Result<(postgres::Config, Tls), SqlError> {
    let invalid = |why: &str| {
        SqlError::Connect(format!(
            "platform.database_url is not a usable PostgreSQL URL: {why}"
        ))
    };
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept: Vec<&str> = Vec::new();
    let mut mode = "prefer";
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => mode = value,
            _ => kept.push(pair),
        }
    }
    let (ssl, tls) = match mode {
        "disable" => (SslMode::Disable, Tls::Off),
        "allow" | "prefer" => (SslMode::Prefer, Tls::Verified),
        "require" | "verify-ca" | "verify-full" => (SslMode::Require, Tls::Verified),
        _ => {
            return Err(invalid(
                "sslmode must be disable, allow, prefer, require, verify-ca or verify-full",
            ));
        }
    };
    let rebuilt = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    // The driver's parse errors name the option at fault, never the URL or its password.
    let mut config: postgres::Config = rebuilt
        .parse()
        .map_err(|e: postgres::Error| invalid(&super::error::postgres_message(&e)))?;
    config.ssl_mode(ssl);
    Ok((config, tls))
}

/// rustls on the ring provider with `postgres_ca_file`'s certificates, or the system roots.
fn tls_config(cfg: &PlatformConfig) -> Result<rustls::ClientConfig, SqlError> {
    let tls_error = |why: String| SqlError::Connect(format!("TLS: {why}"));
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.postgres_ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                tls_error(format!("platform.postgres_ca_file {}: {e}", path.display()))
            })?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| {
                    tls_error(format!("platform.postgres_ca_file {}: {e}", path.display()))
                })?;
                roots
                    .add(cert)
                    .map_err(|e| tls_error(format!("platform.postgres_ca_file: {e}")))?;
            }
        }
        None => {
            // Unreadable individual system certificates are skipped, as every TLS client does.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(tls_error(
            "no CA certificate to verify the server with (set platform.postgres_ca_file)"
                .to_owned(),
        ));
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

/// Runs `sql` with `params` inlined, every row as text cells.
pub(super) fn rows(
    client: &mut Client,
    sql: &str,
    params: &[Cell],
    step: &'static str,
) -> Result<Vec<Vec<Cell>>, SqlError> {
    let messages = simple_query(client, sql, params, step)?;
    let mut out = Vec::new();
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            let cells = (0..row.len())
                .map(|i| text_cell(&row, i, step).map(CellRef::to_cell))
                .collect::<Result<Vec<Cell>, SqlError>>()?;
            out.push(cells);
        }
    }
    Ok(out)
}

/// Runs `sql` like [`rows`], handing each row's first `N` cells to `row` borrowed (their text
/// output; `NULL` for any the row lacks) as the rows arrive: the statement runs as
/// `COPY (…) TO STDOUT`, which streams one row per message, so the result is never held whole
/// (`simple_query` collects it all first: at L the schedules and executions reads were the
/// largest part of the PostgreSQL cycle's peak memory; benches/RESULTS.md). Same text per value
/// as the simple query protocol, same single statement, same read-only transaction.
pub(super) fn each_row<const N: usize>(
    client: &mut Client,
    sql: &str,
    params: &[Cell],
    step: &'static str,
    row: &mut impl FnMut([CellRef<'_>; N]),
) -> Result<u64, SqlError> {
    use std::io::BufRead;

    let sql = inline(sql, params).ok_or_else(|| mismatched_params(step))?;
    let mut copy = client
        .copy_out(format!("COPY ({sql}) TO STDOUT").as_str())
        .map_err(|e| SqlError::postgres(step, &e))?;
    let (mut line, mut scratch) = (Vec::new(), Vec::new());
    let mut count = 0;
    loop {
        line.clear();
        let read = copy.read_until(b'\n', &mut line).map_err(|e| {
            // The reader wraps the driver's error; its message is the server's, when it has one.
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<postgres::Error>())
            {
                Some(pg) => SqlError::postgres(step, pg),
                None => SqlError::Postgres {
                    step,
                    message: e.to_string(),
                },
            }
        })?;
        if read == 0 {
            return Ok(count);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        super::copy_text::split_line(&line, &mut scratch, row).map_err(|_| SqlError::Postgres {
            step,
            message: "a value is not valid UTF-8".to_owned(),
        })?;
        count += 1;
    }
}

fn mismatched_params(step: &'static str) -> SqlError {
    SqlError::Postgres {
        step,
        message: "internal error: statement parameters do not match its placeholders".to_owned(),
    }
}

/// Column `i` of `row`, borrowed: its text output, or `NULL`.
fn text_cell<'r>(
    row: &'r SimpleQueryRow,
    i: usize,
    step: &'static str,
) -> Result<CellRef<'r>, SqlError> {
    let text = row.try_get(i).map_err(|e| SqlError::postgres(step, &e))?;
    Ok(text.map_or(CellRef::Null, CellRef::Text))
}

/// Runs `sql` with `params` inlined, over the simple query protocol (every value as text).
fn simple_query(
    client: &mut Client,
    sql: &str,
    params: &[Cell],
    step: &'static str,
) -> Result<Vec<SimpleQueryMessage>, SqlError> {
    let sql = inline(sql, params).ok_or_else(|| mismatched_params(step))?;
    client
        .simple_query(&sql)
        .map_err(|e| SqlError::postgres(step, &e))
}

/// `sql` with each `?` replaced by the next parameter as a literal; `None` when the counts
/// differ.
fn inline(sql: &str, params: &[Cell]) -> Option<String> {
    let mut out = String::with_capacity(sql.len() + params.len() * 16);
    let mut params = params.iter();
    for ch in sql.chars() {
        if ch != '?' {
            out.push(ch);
            continue;
        }
        match params.next()? {
            Cell::Null => out.push_str("NULL"),
            Cell::Integer(i) => out.push_str(&i.to_string()),
            Cell::Real(f) if f.is_finite() => out.push_str(&format!("{f:?}")),
            Cell::Real(_) => out.push_str("NULL"),
            Cell::Text(s) => out.push_str(&postgres_protocol::escape::escape_literal(s)),
            Cell::Blob(b) => {
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                out.push_str(&format!("'\\x{hex}'::bytea"));
            }
        }
    }
    params.next().is_none().then_some(out)
}

/// What the catalog query found about the session's role.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoleFacts {
    /// `current_user`.
    pub name: String,
    /// The role is a superuser.
    pub superuser: bool,
    /// Watched tables the role can write, with the privileges (`INSERT`, `UPDATE`, …).
    pub writable: BTreeMap<String, String>,
    /// Watched tables present (lowercased), for the `GRANT SELECT` advice.
    pub tables: BTreeSet<String>,
}

impl RoleFacts {
    /// The role may change the platform.
    pub fn can_write(&self) -> bool {
        self.superuser || !self.writable.is_empty()
    }

    /// Why the role is refused and the lines that create one canary accepts (for the operator;
    /// no secret in it).
    pub fn refusal(&self, schema: &str) -> String {
        let why = if self.superuser {
            format!("role {:?} is a superuser", self.name)
        } else {
            let tables: Vec<String> = self
                .writable
                .iter()
                .map(|(t, p)| format!("{t} ({p})"))
                .collect();
            format!("role {:?} can write {}", self.name, tables.join(", "))
        };
        let schema = sql_name(schema);
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|t| format!("{schema}.{}", sql_name(t)))
            .collect();
        format!(
            "{why}. A read-only transaction does not stop every side effect, so canary needs a role \
             that can only read. Create one (as an administrator): \
             CREATE ROLE canary LOGIN PASSWORD '…'; \
             GRANT USAGE ON SCHEMA {schema} TO canary; \
             GRANT SELECT ON {} TO canary; \
             then use it in platform.database_url, or set platform.allow_write_role: true to accept the risk",
            if tables.is_empty() {
                format!("ALL TABLES IN SCHEMA {schema}")
            } else {
                tables.join(", ")
            }
        )
    }
}

/// `name` as an administrator would type it: plain when PostgreSQL would not fold it, quoted
/// otherwise (names here are checked plain identifiers, so no quote needs escaping).
fn sql_name(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        name.to_owned()
    } else {
        format!("\"{name}\"")
    }
}

/// One statement for the columns (with their declared types) of every table canary may read in
/// the session's schema, the first column of each usable index, and the role's privileges.
/// Fails with [`SqlError::WriteRole`] when the role can write and `allow_write_role` is off.
pub(super) fn read_catalog(r: &mut Reader<'_>, cfg: &PlatformConfig) -> Result<Catalog, SqlError> {
    let (catalog, role) = read_catalog_and_role(r, cfg)?;
    if role.can_write() && !cfg.allow_write_role {
        return Err(SqlError::WriteRole(role.refusal(&cfg.schema)));
    }
    Ok(catalog)
}

/// [`read_catalog`] without the refusal (the startup check reports it as a config problem).
pub(super) fn read_catalog_and_role(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
) -> Result<(Catalog, RoleFacts), SqlError> {
    let mut wanted: BTreeSet<String> = cfg.cascade.iter().map(|c| c.table.clone()).collect();
    wanted.insert(cfg.tables.agents.table.clone());
    wanted.insert(cfg.tables.executions.table.clone());
    wanted.insert(cfg.tables.schedules.table.clone());
    wanted.insert(cfg.tables.settings.table.clone());
    let wanted: Vec<Cell> = wanted
        .into_iter()
        .map(|t| Cell::Text(t.to_ascii_lowercase()))
        .collect();
    let list = placeholders(wanted.len());
    // Privileges are per table; `has_table_privilege` is cached by the server, so repeating it
    // per column costs nothing worth another statement.
    let sql = format!(
        "SELECT c.relname::text, a.attname::text, lower(format_type(a.atttypid, NULL)), \
         c.relkind::text, concat_ws(',', \
         CASE WHEN has_table_privilege(c.oid, 'INSERT') THEN 'INSERT' END, \
         CASE WHEN has_table_privilege(c.oid, 'UPDATE') THEN 'UPDATE' END, \
         CASE WHEN has_table_privilege(c.oid, 'DELETE') THEN 'DELETE' END, \
         CASE WHEN has_table_privilege(c.oid, 'TRUNCATE') THEN 'TRUNCATE' END), \
         has_table_privilege(c.oid, 'SELECT')::text \
         FROM pg_catalog.pg_class AS c \
         JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
         AND lower(c.relname) IN ({list}) \
         UNION ALL SELECT c.relname::text, chr(1) || a.attname::text, '', '', '', 'true' \
         FROM pg_catalog.pg_index AS i \
         JOIN pg_catalog.pg_class AS c ON c.oid = i.indrelid \
         JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
         WHERE n.nspname = current_schema() AND i.indpred IS NULL AND i.indisvalid \
         AND lower(c.relname) IN ({list}) \
         UNION ALL SELECT c.relname::text, chr(4) || a.attname::text, \
         CASE WHEN i.indcollation[0] = 0 THEN '-' \
         WHEN co.collname = 'default' THEN 'default:' || \
         (SELECT d.datcollate::text FROM pg_catalog.pg_database AS d \
          WHERE d.datname = current_database()) \
         ELSE co.collname::text END, '', '', 'true' \
         FROM pg_catalog.pg_index AS i \
         JOIN pg_catalog.pg_class AS c ON c.oid = i.indrelid \
         JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
         LEFT JOIN pg_catalog.pg_collation AS co ON co.oid = i.indcollation[0] \
         WHERE n.nspname = current_schema() AND i.indisvalid \
         AND lower(c.relname) IN ({list}) \
         UNION ALL SELECT current_user::text, chr(3), '', '', \
         CASE WHEN r.rolsuper THEN 'superuser' ELSE '' END, 'true' \
         FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user"
    );
    let params: Vec<Cell> = (0..3).flat_map(|_| wanted.iter().cloned()).collect();
    let rows = r.rows(&sql, &params, "reading the schema")?;
    let mut catalog = Catalog::default();
    let mut role = RoleFacts::default();
    for row in rows {
        let [table, column, ty, kind, privileges, selectable] = cells(row);
        let (Some(table), Some(column)) = (value_text(table.as_ref()), value_text(column.as_ref()))
        else {
            continue;
        };
        let privileges = value_text(privileges.as_ref()).unwrap_or_default();
        if column == ROLE {
            role.name = table;
            role.superuser = privileges == "superuser";
            continue;
        }
        let table = table.to_ascii_lowercase();
        // A table the role may not read is, for canary, a table it cannot see: an optional one
        // is skipped (named in the diagnostics), a required one fails the read with its name.
        if value_text(selectable.as_ref()).as_deref() == Some("false") {
            role.tables.insert(table.clone());
            catalog.unreadable.insert(table);
            continue;
        }
        let info: &mut TableInfo = catalog.tables.entry(table.clone()).or_default();
        if let Some(indexed) = column.strip_prefix(INDEXED) {
            info.index_leads.insert(indexed.to_ascii_lowercase());
            continue;
        }
        if let Some(indexed) = column.strip_prefix(RANGE_INDEXED) {
            // Several indexes may lead with the column: any bytewise one will do.
            if let Some(collation) = value_text(ty.as_ref())
                .as_deref()
                .and_then(bytewise_collation)
            {
                info.range_collations
                    .entry(indexed.to_ascii_lowercase())
                    .or_insert(collation);
            }
            continue;
        }
        let column = column.to_ascii_lowercase();
        // Only plain and partitioned tables compare names as stored; views (and the rest) may
        // not, which keeps the executions cascade on its SQL arm.
        if !matches!(value_text(kind.as_ref()).as_deref(), Some("r" | "p")) {
            info.not_plain = true;
        }
        if let Some(ty) = value_text(ty.as_ref()) {
            info.types.insert(column.clone(), ty);
        }
        info.columns.insert(column);
        role.tables.insert(table.clone());
        if !privileges.is_empty() {
            role.writable.insert(table, privileges.replace(',', ", "));
        }
    }
    // The index arm does not look at privileges: drop what it added for unreadable tables.
    let unreadable = catalog.unreadable.clone();
    catalog
        .tables
        .retain(|table, _| !unreadable.contains(table));
    Ok((catalog, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bytewise_index_orders_are_used_for_ranges() {
        assert_eq!(bytewise_collation("-"), Some(""));
        assert_eq!(bytewise_collation("C"), Some("C"));
        assert_eq!(bytewise_collation("POSIX"), Some("POSIX"));
        assert_eq!(bytewise_collation("default:C"), Some("default"));
        assert_eq!(bytewise_collation("default:C.UTF-8"), Some("default"));
        assert_eq!(bytewise_collation("default:en_US.UTF-8"), None);
        assert_eq!(bytewise_collation("en-x-icu"), None);
        assert_eq!(bytewise_collation("default"), None);
    }

    #[test]
    fn parameters_are_inlined_as_quoted_literals() {
        let sql = "SELECT ? , ?, ?, ?, ? FROM t";
        let params = [
            Cell::Text("it's".to_owned()),
            Cell::Integer(-3),
            Cell::Real(1.5),
            Cell::Null,
            Cell::Text("a\\b".to_owned()),
        ];
        assert_eq!(
            inline(sql, &params).as_deref(),
            Some("SELECT 'it''s' , -3, 1.5, NULL,  E'a\\\\b' FROM t")
        );
        assert_eq!(inline("SELECT ?", &[]), None);
        assert_eq!(inline("SELECT 1", &[Cell::Null]), None);
    }

    #[test]
    fn sslmode_is_read_off_the_url_and_never_echoes_it() {
        let (config, tls) =
            parse_url("postgres://canary:s3cret@db.internal:5433/platform?sslmode=verify-full")
                .expect("parses");
        assert_eq!(tls, Tls::Verified);
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(config.get_dbname(), Some("platform"));
        let (config, tls) =
            parse_url("postgresql://u@h/db?sslmode=disable&connect_timeout=3").expect("parses");
        assert_eq!((tls, config.get_ssl_mode()), (Tls::Off, SslMode::Disable));
        let (_, tls) = parse_url("postgres://u@h/db").expect("parses");
        assert_eq!(tls, Tls::Verified, "libpq's default, prefer, verified");

        for bad in [
            "postgres://u:s3cret@h/db?sslmode=sometimes",
            "postgres://u:s3cret@h/db?nonsense_option=1",
        ] {
            let message = parse_url(bad).expect_err("refused").to_string();
            assert!(!message.contains("s3cret"), "{message}");
            assert!(message.contains("platform.database_url"), "{message}");
        }
    }

    #[test]
    fn a_refusal_names_the_role_and_the_grants_it_needs() {
        let role = RoleFacts {
            name: "platform_owner".to_owned(),
            superuser: false,
            writable: [("agent_ownership".to_owned(), "INSERT, UPDATE".to_owned())].into(),
            tables: ["agent_ownership".to_owned(), "schedules".to_owned()].into(),
        };
        assert!(role.can_write());
        let text = role.refusal("public");
        assert!(text.contains("\"platform_owner\" can write agent_ownership (INSERT, UPDATE)"));
        assert!(
            text.contains("GRANT SELECT ON public.agent_ownership, public.schedules TO canary;")
        );
        assert!(text.contains("GRANT USAGE ON SCHEMA public TO canary;"));
        assert!(!RoleFacts::default().can_write());
        let mixed = RoleFacts {
            superuser: true,
            tables: ["agent_ownership".to_owned()].into(),
            ..RoleFacts::default()
        };
        assert!(
            mixed
                .refusal("Platform")
                .contains("GRANT SELECT ON \"Platform\".agent_ownership TO canary;")
        );
    }
}

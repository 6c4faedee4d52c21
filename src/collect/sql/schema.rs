//! What the platform database offers, as typed facts: which optional columns exist, which
//! tables are plain, which column leads an index, which cascade entries can be scanned. The
//! readers build their statements from these facts, never by looking names up again.
//!
//! Two steps, so a second dialect only supplies the first: the dialect reads a [`Catalog`]
//! (tables, their columns, the columns leading a usable index, whether the table is plain; for
//! SQLite `sqlite::read_catalog`, for PostgreSQL `postgres::read_catalog`), and [`Schema::resolve`] turns it into the typed [`Schema`]
//! for the configured names (dialect-independent). Resolving fails only when a required table or
//! column is absent: guessing would be worse than *unknown*.
//!
//! It must not run statements (the dialect does) nor build queries (the readers do).

use std::collections::{BTreeMap, BTreeSet};

use canary_invariants::Field;

use super::error::SqlError;
use super::reader::TimeColumn;
use crate::config::platform::PlatformConfig;

/// One table or view as the database describes it. Names are lowercased: SQL identifiers
/// compare case-insensitively.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Its columns.
    pub columns: BTreeSet<String>,
    /// Columns that are the first column of a full (non-partial), BINARY-collated index.
    pub index_leads: BTreeSet<String>,
    /// Columns that are the first column of a partial, BINARY-collated index (SQLite): the
    /// platform's terminal-rows index on `completed_at` is one.
    pub partial_index_leads: BTreeSet<String>,
    /// PostgreSQL: column → how to name its order in a comparison so that the planner can
    /// range-scan an index (full or partial) it leads, for the indexes whose order is bytewise
    /// (see `postgres::bytewise_collation`): `default` (the database's own collation is C-like)
    /// or `C`/`POSIX`. Empty for SQLite (its indexes are BINARY unless declared otherwise, which
    /// `index_leads` already excludes).
    pub range_collations: BTreeMap<String, &'static str>,
    /// A view, or a table whose definition declares a collation: SQL `=` on its columns may then
    /// differ from byte equality.
    pub not_plain: bool,
    /// Declared type of each column, lowercased, as PostgreSQL's `format_type` names it
    /// (`text`, `timestamp with time zone`, …). Empty for SQLite, whose declared types bind
    /// nothing.
    pub types: BTreeMap<String, String>,
}

/// The tables canary may read, as the dialect found them (lowercased name → description).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Lowercased table name → its description.
    pub tables: BTreeMap<String, TableInfo>,
    /// Tables that exist but the session may not read (PostgreSQL: no `SELECT` privilege);
    /// absent from `tables`, named when required.
    pub unreadable: BTreeSet<String>,
}

impl Catalog {
    /// The table, if present.
    pub fn table(&self, table: &str) -> Option<&TableInfo> {
        self.tables.get(&table.to_ascii_lowercase())
    }

    /// `column` exists in `table`.
    pub fn has_column(&self, table: &str, column: &str) -> bool {
        self.table(table)
            .is_some_and(|t| t.columns.contains(&column.to_ascii_lowercase()))
    }

    /// `table` is a table (not a view) whose definition declares no collation: every comparison
    /// of its columns is then BINARY.
    fn is_plain(&self, table: &str) -> bool {
        self.table(table).is_some_and(|t| !t.not_plain)
    }

    /// How `column` of `table` stores instants (see [`TimeColumn`]): text unless the dialect
    /// reported another declared type.
    fn time_column(&self, table: &str, column: &str) -> TimeColumn {
        let declared = self
            .table(table)
            .and_then(|t| t.types.get(&column.to_ascii_lowercase()));
        match declared.map(String::as_str) {
            None | Some("text" | "character varying" | "character" | "name") => TimeColumn::Text,
            Some(t) if t.starts_with("character") => TimeColumn::Text,
            Some(t) if t.starts_with("timestamp") || t == "date" => TimeColumn::Native,
            Some(_) => TimeColumn::Other,
        }
    }

    /// `column` is the first column of a full, BINARY-collated index on `table`.
    fn leads_index(&self, table: &str, column: &str) -> bool {
        self.table(table)
            .is_some_and(|t| t.index_leads.contains(&column.to_ascii_lowercase()))
    }

    fn range_collation(&self, table: &str, column: &str) -> Option<&'static str> {
        self.table(table)
            .and_then(|t| t.range_collations.get(&column.to_ascii_lowercase()))
            .copied()
    }

    fn leads_partial_index(&self, table: &str, column: &str) -> bool {
        self.table(table)
            .is_some_and(|t| t.partial_index_leads.contains(&column.to_ascii_lowercase()))
    }

    /// Fails unless `table` exists with every one of `columns`.
    fn require(&self, table: &str, columns: &[&String]) -> Result<(), SqlError> {
        if self.table(table).is_none() {
            if self.unreadable.contains(&table.to_ascii_lowercase()) {
                return Err(SqlError::NoPrivilege(table.to_owned()));
            }
            return Err(SqlError::MissingTable(table.to_owned()));
        }
        let missing: Vec<&str> = columns
            .iter()
            .filter(|c| !self.has_column(table, c))
            .map(|c| c.as_str())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SqlError::MissingColumns {
                table: table.to_owned(),
                columns: missing.join(", "),
            })
        }
    }
}

/// The roster table (its name column is required).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentsSchema {
    /// See [`TableInfo::not_plain`] (here: it is plain).
    pub plain: bool,
    /// Optional columns present.
    pub is_system: bool,
    /// Optional column present.
    pub max_parallel_tasks: bool,
    /// Optional column present.
    pub execution_timeout_seconds: bool,
    /// Optional column present.
    pub deleted_at: bool,
}

/// The executions table (id, agent name and status are required).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionsSchema {
    /// See [`TableInfo::not_plain`] (here: it is plain).
    pub plain: bool,
    /// The status column leads a usable index (the executions query then uses a skip-scan).
    pub status_indexed: bool,
    /// `completed_at` leads an index, full or partial (SQLite only, for now): the recent-terminal
    /// read is then written as one range per value shape, each an index range.
    pub completed_indexed: bool,
    /// PostgreSQL: `completed_at` leads an index whose order is bytewise, and this is the
    /// collation to compare it under so that the planner can range-scan that index (the
    /// recent-terminal prefilter then becomes a `BitmapOr` of index ranges instead of a scan).
    /// `None`: no such index (the prefilter compares under `C` and the table is scanned).
    pub completed_range_collation: Option<&'static str>,
    /// Optional column present.
    pub schedule_id: bool,
    /// Optional column present.
    pub started_at: bool,
    /// How `started_at` stores instants.
    pub started_at_kind: TimeColumn,
    /// Optional column present.
    pub completed_at: bool,
    /// How `completed_at` stores instants.
    pub completed_at_kind: TimeColumn,
    /// Optional column present.
    pub queued_at: bool,
    /// Optional column present.
    pub duration_ms: bool,
    /// Optional column present.
    pub session_id: bool,
    /// Optional column present.
    pub lease_expires_at: bool,
    /// Optional column present.
    pub backlog_metadata: bool,
}

/// The schedules table, present with the columns E-06 cannot do without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulesSchema {
    /// Optional column present.
    pub deleted_at: bool,
}

/// Whether a configured cascade entry can be scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CascadeTable {
    /// The table and the columns it needs exist.
    Usable,
    /// The table is absent (listed in `skipped_tables`).
    MissingTable,
    /// The table lacks this (agent or filter) column, as configured (an anomaly, and skipped).
    MissingColumn(String),
}

/// The platform database's shape for the configured names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// The roster.
    pub agents: AgentsSchema,
    /// The executions.
    pub executions: ExecutionsSchema,
    /// The schedules, or `None` when the table or a column E-06 needs is absent.
    pub schedules: Option<SchedulesSchema>,
    /// The settings table exists with its key and value columns (the concurrency ceiling).
    pub settings: bool,
    /// One per configured cascade entry, in configuration order.
    pub cascade: Vec<CascadeTable>,
}

impl Schema {
    /// Types `catalog` for `cfg`'s names. Fails when the roster or executions table, or one of
    /// their required columns, is absent.
    pub fn resolve(catalog: &Catalog, cfg: &PlatformConfig) -> Result<Schema, SqlError> {
        let a = &cfg.tables.agents;
        let e = &cfg.tables.executions;
        let sc = &cfg.tables.schedules;
        catalog.require(&a.table, &[&a.name])?;
        catalog.require(&e.table, &[&e.id, &e.agent_name, &e.status])?;
        let agents = AgentsSchema {
            plain: catalog.is_plain(&a.table),
            is_system: catalog.has_column(&a.table, &a.is_system),
            max_parallel_tasks: catalog.has_column(&a.table, &a.max_parallel_tasks),
            execution_timeout_seconds: catalog.has_column(&a.table, &a.execution_timeout_seconds),
            deleted_at: catalog.has_column(&a.table, &a.deleted_at),
        };
        let has = |column: &str| catalog.has_column(&e.table, column);
        let executions = ExecutionsSchema {
            plain: catalog.is_plain(&e.table),
            status_indexed: catalog.leads_index(&e.table, &e.status),
            completed_indexed: catalog.leads_index(&e.table, &e.completed_at)
                || catalog.leads_partial_index(&e.table, &e.completed_at),
            completed_range_collation: catalog.range_collation(&e.table, &e.completed_at),
            schedule_id: has(&e.schedule_id),
            started_at: has(&e.started_at),
            started_at_kind: catalog.time_column(&e.table, &e.started_at),
            completed_at: has(&e.completed_at),
            completed_at_kind: catalog.time_column(&e.table, &e.completed_at),
            queued_at: has(&e.queued_at),
            duration_ms: has(&e.duration_ms),
            session_id: has(&e.session_id),
            lease_expires_at: has(&e.lease_expires_at),
            backlog_metadata: has(&e.backlog_metadata),
        };
        let schedules = [&sc.id, &sc.agent_name, &sc.enabled, &sc.next_run_at]
            .iter()
            .all(|c| catalog.has_column(&sc.table, c))
            .then(|| SchedulesSchema {
                deleted_at: catalog.has_column(&sc.table, &sc.deleted_at),
            });
        let st = &cfg.tables.settings;
        let settings = [&st.key, &st.value]
            .iter()
            .all(|c| catalog.has_column(&st.table, c));
        let cascade = cfg
            .cascade
            .iter()
            .map(|entry| {
                if catalog.table(&entry.table).is_none() {
                    return CascadeTable::MissingTable;
                }
                let needed = std::iter::once(&entry.column)
                    .chain(entry.filter.as_ref().map(|f| &f.column))
                    .chain(entry.conditions.iter().map(|w| &w.column));
                match needed
                    .into_iter()
                    .find(|c| !catalog.has_column(&entry.table, c))
                {
                    Some(absent) => CascadeTable::MissingColumn(absent.clone()),
                    None => CascadeTable::Usable,
                }
            })
            .collect();
        Ok(Schema {
            agents,
            executions,
            schedules,
            settings,
            cascade,
        })
    }

    /// The snapshot fields that are absent (their invariants become *unknown*).
    pub fn missing_fields(&self) -> BTreeSet<Field> {
        let a = &self.agents;
        let e = &self.executions;
        let mut missing = BTreeSet::new();
        for (field, present) in [
            (Field::AgentIsSystem, a.is_system),
            (Field::AgentMaxParallelTasks, a.max_parallel_tasks),
            (Field::AgentExecutionTimeout, a.execution_timeout_seconds),
            (Field::AgentDeletedAt, a.deleted_at),
            (Field::ExecScheduleId, e.schedule_id),
            (Field::ExecStartedAt, e.started_at),
            (Field::ExecCompletedAt, e.completed_at),
            (Field::ExecQueuedAt, e.queued_at),
            (Field::ExecDurationMs, e.duration_ms),
            (Field::ExecSessionId, e.session_id),
            (Field::ExecLeaseExpiresAt, e.lease_expires_at),
            (Field::ExecBacklogMetadata, e.backlog_metadata),
        ] {
            if !present {
                missing.insert(field);
            }
        }
        match self.schedules {
            Some(s) if !s.deleted_at => {
                missing.insert(Field::ScheduleDeletedAt);
            }
            Some(_) => {}
            // Without the table (or a column E-06 cannot do without) E-06 is unknown, not green.
            None => {
                missing.insert(Field::Schedules);
            }
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(tables: &[(&str, &[&str])]) -> Catalog {
        Catalog {
            tables: tables
                .iter()
                .map(|(name, columns)| {
                    let info = TableInfo {
                        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
                        ..TableInfo::default()
                    };
                    ((*name).to_owned(), info)
                })
                .collect(),
            unreadable: BTreeSet::new(),
        }
    }

    #[test]
    fn required_columns_fail_and_optional_ones_become_missing_fields() {
        let cfg = PlatformConfig::default();
        let minimal = catalog(&[
            ("agent_ownership", &["agent_name"]),
            ("schedule_executions", &["id", "agent_name", "status"]),
        ]);
        let schema = Schema::resolve(&minimal, &cfg).expect("resolves");
        let missing = schema.missing_fields();
        assert!(missing.contains(&Field::ExecStartedAt));
        assert!(missing.contains(&Field::Schedules));
        assert!(!missing.contains(&Field::ScheduleDeletedAt));
        assert!(schema.cascade.contains(&CascadeTable::MissingTable));

        let no_status = catalog(&[
            ("agent_ownership", &["agent_name"]),
            ("SCHEDULE_EXECUTIONS", &["id", "agent_name"]),
        ]);
        // Lowercased on reading by the dialect; an upper-case key is simply absent here.
        assert!(matches!(
            Schema::resolve(&no_status, &cfg),
            Err(SqlError::MissingTable(_))
        ));
        let no_status = catalog(&[
            ("agent_ownership", &["agent_name"]),
            ("schedule_executions", &["id", "agent_name"]),
        ]);
        assert!(matches!(
            Schema::resolve(&no_status, &cfg),
            Err(SqlError::MissingColumns { columns, .. }) if columns == "status"
        ));
    }
}

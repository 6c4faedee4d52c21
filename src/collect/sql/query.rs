//! Dialect-independent pieces of statement building: quoted identifiers, placeholder lists and
//! the `NULL` stand-in for an absent optional column. Plain ANSI SQL, shared by every reader and
//! every dialect.
//!
//! It must not run anything nor look at the schema itself (callers pass what it says).

/// Double-quoted identifier; callers have checked `config::platform::is_identifier` (see
/// `check_identifiers`), so no escaping is needed.
pub(super) fn q(ident: &str) -> String {
    format!("\"{ident}\"")
}

pub(super) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `"col"` when the column exists (`present`, from the `Schema`), else `NULL` so the query
/// keeps its shape.
pub(super) fn col_or_null(present: bool, column: &str) -> String {
    if present {
        q(column)
    } else {
        "NULL".to_owned()
    }
}

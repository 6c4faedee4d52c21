//! One line of PostgreSQL's `COPY … TO STDOUT` text format → the row's cells, borrowed.
//!
//! Why COPY: the driver's `simple_query` hands back a whole result at once (every row of the
//! 70 000 schedules and ~50 000 executions at L held together), while `copy_out` streams it, one
//! row per message. The text format carries each value as its type's text output — the same
//! text the simple query protocol returns, which the shared `value` functions read — with
//! tabs between columns, `\N` for `NULL` and backslash escapes for the few bytes that would
//! break the framing (PostgreSQL's documentation, "COPY", File Formats → Text Format).
//!
//! Written by hand: the format is six rules, and no well-kept crate parses it without also
//! owning the connection. It must not talk to the server (see `postgres`).

use super::value::CellRef;

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LineError {
    /// A value is not valid UTF-8 (the session's client encoding is UTF-8, so this is a
    /// driver or server fault, never silently replaced).
    NotUtf8,
}

/// Splits one `COPY` text line (its newline removed) into its first `N` cells, handing them to
/// `row`. Unescaped text is written to `scratch` (reused across lines: no allocation per row
/// once it has grown); a column past the line's last is `NULL`.
pub(super) fn split_line<const N: usize>(
    line: &[u8],
    scratch: &mut Vec<u8>,
    row: &mut impl FnMut([CellRef<'_>; N]),
) -> Result<(), LineError> {
    scratch.clear();
    // Per column: the range of its text in `scratch`, or `None` for `\N`.
    let mut ranges: [Option<(usize, usize)>; N] = [None; N];
    for (column, field) in line.split(|b| *b == b'\t').enumerate().take(N) {
        if field == b"\\N" {
            continue;
        }
        let start = scratch.len();
        unescape(field, scratch);
        if let Some(range) = ranges.get_mut(column) {
            *range = Some((start, scratch.len()));
        }
    }
    // Tabs and escapes are ASCII, so every range starts and ends on a character boundary.
    let text = std::str::from_utf8(scratch).map_err(|_| LineError::NotUtf8)?;
    let mut cells = [CellRef::Null; N];
    for (cell, range) in cells.iter_mut().zip(ranges) {
        if let Some(value) = range.and_then(|(start, end)| text.get(start..end)) {
            *cell = CellRef::Text(value);
        }
    }
    row(cells);
    Ok(())
}

/// Appends `field` to `out` with its backslash escapes decoded: `\b \f \n \r \t \v`, `\\`,
/// octal `\NNN`, hex `\xHH`, and any other escaped byte as itself (the format's input rules;
/// the server's output only uses the letters and `\\`).
fn unescape(field: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(offset) = field
        .get(i..)
        .and_then(|rest| rest.iter().position(|b| *b == b'\\'))
    {
        out.extend_from_slice(field.get(i..i + offset).unwrap_or_default());
        i += offset + 1;
        let Some(&escaped) = field.get(i) else {
            // A trailing lone backslash: kept as written.
            out.push(b'\\');
            return;
        };
        i += 1;
        let decoded = match escaped {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            // `\777` overflows a byte; the server never writes it, and it is kept in range.
            b'0'..=b'7' => (digits(field, &mut i, 8, u32::from(escaped - b'0')) & 0xff) as u8,
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                (digits(field, &mut i, 16, 0) & 0xff) as u8
            }
            other => other,
        };
        out.push(decoded);
    }
    out.extend_from_slice(field.get(i..).unwrap_or_default());
}

/// Up to two more digits of `radix` from `field` at `*i` (an escape's octal or hex tail),
/// folded into `value`; `*i` moves past the digits taken.
fn digits(field: &[u8], i: &mut usize, radix: u32, mut value: u32) -> u32 {
    for _ in 0..2 {
        match field.get(*i).and_then(|d| char::from(*d).to_digit(radix)) {
            Some(d) => {
                value = value * radix + d;
                *i += 1;
            }
            None => break,
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells<const N: usize>(line: &[u8]) -> Result<Vec<Option<String>>, LineError> {
        let mut scratch = Vec::new();
        let mut seen = Vec::new();
        split_line::<N>(line, &mut scratch, &mut |row| {
            seen = row
                .iter()
                .map(|c| match c {
                    CellRef::Text(t) => Some((*t).to_owned()),
                    CellRef::Null => None,
                    other => Some(format!("unexpected {other:?}")),
                })
                .collect();
        })?;
        Ok(seen)
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn columns_nulls_and_missing_columns() {
        assert_eq!(
            cells::<4>(b"exec-1\t\\N\t2026-11-30 21:00:00+00"),
            Ok(vec![
                some("exec-1"),
                None,
                some("2026-11-30 21:00:00+00"),
                None
            ])
        );
        // An empty string is not NULL; columns past N are ignored.
        assert_eq!(cells::<2>(b"\tb\tc"), Ok(vec![some(""), some("b")]));
        // `\N` inside a value is an escaped `N`, not NULL.
        assert_eq!(cells::<1>(b"a\\Nb"), Ok(vec![some("aNb")]));
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(
            cells::<1>(b"tab\\there\\nnew\\rcr\\\\back\\b\\f\\v"),
            Ok(vec![some("tab\there\nnew\rcr\\back\u{8}\u{c}\u{b}")])
        );
        // bytea's own text output after COPY doubled its backslash.
        assert_eq!(cells::<1>(b"\\\\x00ff"), Ok(vec![some("\\x00ff")]));
        assert_eq!(
            cells::<1>(b"\\101\\x41\\x4a\\7"),
            Ok(vec![some("AAJ\u{7}")])
        );
        assert_eq!(cells::<1>(b"\\q\\xg"), Ok(vec![some("qxg")]));
        assert_eq!(cells::<1>(b"end\\"), Ok(vec![some("end\\")]));
        assert_eq!(cells::<1>("naïve ✓".as_bytes()), Ok(vec![some("naïve ✓")]));
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_replacement() {
        assert_eq!(cells::<1>(b"\xff\xfe"), Err(LineError::NotUtf8));
        assert_eq!(cells::<1>(b"ok\t\\377"), Ok(vec![some("ok")]));
        assert_eq!(cells::<2>(b"ok\t\\377"), Err(LineError::NotUtf8));
    }

    #[test]
    fn the_scratch_buffer_is_reused() {
        let mut scratch = Vec::new();
        let mut firsts = Vec::new();
        for line in [&b"long value here\tx"[..], b"y\tz"] {
            split_line::<2>(line, &mut scratch, &mut |[first, _]| {
                if let CellRef::Text(t) = first {
                    firsts.push(t.to_owned());
                }
            })
            .expect("reads");
        }
        assert_eq!(firsts, ["long value here", "y"]);
    }
}

//! The deterministic generator the dataset is derived from: a mixer over the row index (so row
//! `i` is the same in every seed), picks, UUID-shaped ids, and the timestamp shapes of DESIGN §4
//! written without allocating. Pure: no store access, no clock.

/// splitmix64: a fast, good-enough deterministic mixer, so row `i` is the same in every seed.
pub(super) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A value in `0..n` (0 when `n` is 0) from a mixed seed.
pub(super) fn below(seed: u64, n: u64) -> u64 {
    if n == 0 { 0 } else { seed % n }
}

/// A UUID-shaped id, like the platform's (the id's length matters to index and scan costs).
pub(super) fn uuid_like(stream: u64, i: u64) -> String {
    // `mix` is a bijection: ids are distinct within a stream, and across streams unless two
    // streams' offsets land within a few million of each other (odds ~2^-40).
    let a = mix(mix(stream).wrapping_add(i));
    let b = mix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// The four timestamp shapes of DESIGN §4, chosen per row so every parser path is exercised.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    /// `2026-01-14T10:00:00.123456Z` (the platform's usual).
    IsoZ,
    /// `2026-01-14T12:00:00.123+02:00`.
    IsoOffset,
    /// `2026-01-14T10:00:00.123456` (no zone: UTC).
    IsoNaive,
    /// `2026-01-14 10:00:00` (SQLite's `datetime('now')`).
    Sqlite,
}

impl Shape {
    /// The shape of a row, picked by `seed` (most rows in the platform's usual ISO `Z`).
    pub(super) fn of(seed: u64) -> Shape {
        match seed % 10 {
            0..=5 => Shape::IsoZ,
            6 => Shape::IsoOffset,
            7 => Shape::IsoNaive,
            _ => Shape::Sqlite,
        }
    }

    /// Writes `ms` in this shape into `out` (reused, so a row costs no new allocation).
    pub(super) fn write(self, ms: i64, out: &mut String) {
        use std::fmt::Write;
        out.clear();
        let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
            return;
        };
        // `write!` into a String cannot fail.
        let _ = match self {
            Shape::IsoZ => write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
            Shape::IsoOffset => {
                let offset = chrono::FixedOffset::east_opt(2 * 3600);
                match offset {
                    Some(o) => write!(
                        out,
                        "{}",
                        t.with_timezone(&o).format("%Y-%m-%dT%H:%M:%S%.3f%:z")
                    ),
                    None => write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
                }
            }
            Shape::IsoNaive => write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6f")),
            Shape::Sqlite => write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S")),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_back_to_the_same_instant() {
        let ms = 1_768_384_800_123;
        for shape in [
            Shape::IsoZ,
            Shape::IsoOffset,
            Shape::IsoNaive,
            Shape::Sqlite,
        ] {
            let mut s = String::new();
            shape.write(ms, &mut s);
            let parsed = crate::collect::timestamp::parse_timestamp_ms(&s);
            let expected = if matches!(shape, Shape::Sqlite) {
                ms - 123
            } else {
                ms
            };
            assert_eq!(parsed, Some(expected), "{s}");
        }
    }

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        let a = uuid_like(1, 1);
        assert_eq!(a.len(), 36);
        assert_ne!(a, uuid_like(1, 2));
        assert_ne!(a, uuid_like(2, 1));
    }
}

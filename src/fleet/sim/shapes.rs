//! Timestamps as the platform writes them, in every shape of DESIGN §4 (the collector must parse
//! each), and the wall clock the simulator stamps them from. Pure formatting; no store access.

use rand::Rng;

/// The shapes timestamps come in (DESIGN §4). The collector must parse every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `2026-01-14T10:00:00.123456Z`
    IsoZ,
    /// `2026-01-14T12:00:00.123456+02:00` (the offset in minutes east of UTC).
    IsoOffset(i32),
    /// `2026-01-14T10:00:00.123456` (no zone: UTC).
    IsoNaive,
    /// `2026-01-14 10:00:00` (SQLite's `datetime('now')`, UTC, whole seconds).
    SqliteDatetime,
}

impl Shape {
    /// One of the shapes, at random.
    pub fn random(rng: &mut impl Rng) -> Shape {
        match rng.random_range(0..5) {
            0 | 1 => Shape::IsoZ,
            2 => Shape::IsoOffset([120, -300, 330, 0][rng.random_range(0..4)]),
            3 => Shape::IsoNaive,
            _ => Shape::SqliteDatetime,
        }
    }
}

/// `ms` (unix milliseconds) written in `shape`.
pub fn stamp(ms: i64, shape: Shape) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        return String::new();
    };
    match shape {
        Shape::IsoZ => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Shape::IsoOffset(minutes) => match chrono::FixedOffset::east_opt(minutes * 60) {
            Some(offset) => t
                .with_timezone(&offset)
                .format("%Y-%m-%dT%H:%M:%S%.6f%:z")
                .to_string(),
            None => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        },
        Shape::IsoNaive => t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        Shape::SqliteDatetime => t.format("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::timestamp::parse_timestamp_ms;

    #[test]
    fn every_shape_parses_back_to_the_same_instant() {
        let ms = 1_768_384_800_123;
        for shape in [
            Shape::IsoZ,
            Shape::IsoOffset(120),
            Shape::IsoOffset(-300),
            Shape::IsoOffset(330),
            Shape::IsoNaive,
        ] {
            assert_eq!(parse_timestamp_ms(&stamp(ms, shape)), Some(ms), "{shape:?}");
        }
        assert_eq!(
            parse_timestamp_ms(&stamp(ms, Shape::SqliteDatetime)),
            Some(ms - 123)
        );
    }
}

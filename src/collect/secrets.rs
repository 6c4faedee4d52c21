//! Credential detection in `backlog_metadata` (G-04), done here in the collector so the
//! metadata text never enters the snapshot: only the names of the patterns found leave this
//! module, never the text, and nothing here logs.
//!
//! A hand-written scanner rather than the `regex` crate: the rule is "a known prefix at a word
//! boundary followed by enough token characters", a dozen lines, and canary does not otherwise
//! depend on `regex`.
//!
//! Rule per pattern: the prefix (case-sensitive) starts at the start of the text or after a
//! character that is not a letter, digit or `_`, and is followed by at least [`MIN_BODY`] token
//! characters (`A–Z a–z 0–9 _ -`). The minimum keeps prose ("the sk- prefix", "sk-learn") from
//! matching; every real format listed is at least that long after its prefix.
//!
//! Valid JSON is scanned string by string after decoding (keys and values), so an escape such
//! as `\n` right before a token does not hide it behind a word character; anything else is
//! scanned as raw text.

/// Minimum number of token characters after the prefix.
pub const MIN_BODY: usize = 16;

/// (pattern name, prefix). Names are what violations report.
pub const PATTERNS: &[(&str, &str)] = &[
    ("openai_style_api_key", "sk-"),
    ("stripe_live_secret_key", "sk_live_"),
    ("github_personal_access_token", "ghp_"),
    ("github_oauth_token", "gho_"),
    ("github_app_server_token", "ghs_"),
    ("github_app_user_token", "ghu_"),
    ("github_fine_grained_pat", "github_pat_"),
    ("slack_bot_token", "xoxb-"),
    ("slack_user_token", "xoxp-"),
    ("aws_access_key_id", "AKIA"),
    ("google_api_key", "AIza"),
];

/// Whether `text` is valid JSON, and the names of the credential patterns it contains (sorted,
/// deduplicated). In valid JSON, the values at `skip` (paths like `/images/*/data`, `*` = any
/// key or index; `platform.backlog_metadata_skip`) are removed before scanning: base64 image
/// data matches a prefix such as `AIza` by chance (the reference's #3114).
pub fn scan_metadata(text: &str, skip: &[String]) -> (bool, Vec<&'static str>) {
    let mut found = Vec::new();
    let valid = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(mut value) => {
            for path in skip {
                let segments: Vec<&str> = path.split('/').skip(1).collect();
                remove_path(&mut value, &segments);
            }
            scan_value(&value, &mut found);
            true
        }
        Err(_) => {
            scan_text(text, &mut found);
            false
        }
    };
    found.sort_unstable();
    found.dedup();
    (valid, found)
}

/// Removes every value at `segments` (`*` matches any key or index) from `value`.
fn remove_path(value: &mut serde_json::Value, segments: &[&str]) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    let matches = |key: &str| *first == "*" || *first == key;
    match value {
        serde_json::Value::Object(map) => {
            if rest.is_empty() {
                map.retain(|key, _| !matches(key));
            } else {
                for (_, child) in map.iter_mut().filter(|(key, _)| matches(key)) {
                    remove_path(child, rest);
                }
            }
        }
        serde_json::Value::Array(items) => {
            if rest.is_empty() {
                let mut index = 0;
                items.retain(|_| {
                    let keep = !matches(&index.to_string());
                    index += 1;
                    keep
                });
            } else {
                for (index, child) in items.iter_mut().enumerate() {
                    if matches(&index.to_string()) {
                        remove_path(child, rest);
                    }
                }
            }
        }
        _ => {}
    }
}

fn scan_value(value: &serde_json::Value, found: &mut Vec<&'static str>) {
    match value {
        serde_json::Value::String(s) => scan_text(s, found),
        serde_json::Value::Array(items) => items.iter().for_each(|v| scan_value(v, found)),
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                scan_text(key, found);
                scan_value(v, found);
            }
        }
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
    }
}

/// Adds the name of every pattern that occurs in `text`.
pub fn scan_text(text: &str, found: &mut Vec<&'static str>) {
    for (name, prefix) in PATTERNS {
        if found.contains(name) {
            continue;
        }
        let hit = text.match_indices(prefix).any(|(at, _)| {
            let before = text.get(..at).and_then(|s| s.chars().next_back());
            let at_boundary = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            let body = text
                .get(at + prefix.len()..)
                .map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                        .take(MIN_BODY)
                        .count()
                })
                .unwrap_or(0);
            at_boundary && body >= MIN_BODY
        });
        if hit {
            found.push(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Image data is skipped at the default path, and only there.
    #[test]
    fn configured_paths_are_skipped_before_scanning() {
        let key = "AIzaSyA1234567890abcdefghijkl";
        let skip = vec!["/images/*/data".to_owned()];
        let text = format!(
            r#"{{"images": [{{"data": "{key}", "mime": "image/png"}}, {{"data": "x"}}], "note": "hi"}}"#
        );
        assert_eq!(scan_metadata(&text, &skip), (true, vec![]));
        assert_eq!(scan_metadata(&text, &[]), (true, vec!["google_api_key"]));
        // Elsewhere the same token is still a finding.
        let elsewhere = format!(r#"{{"images": [{{"data": "x", "alt": "{key}"}}]}}"#);
        assert_eq!(
            scan_metadata(&elsewhere, &skip),
            (true, vec!["google_api_key"])
        );
        let prompt = format!(r#"{{"images": [], "prompt": "use {key}"}}"#);
        assert_eq!(
            scan_metadata(&prompt, &skip),
            (true, vec!["google_api_key"])
        );
        // Invalid JSON has no paths: scanned whole.
        let raw = format!(r#"{{"images": [{{"data": "{key}""#);
        assert_eq!(scan_metadata(&raw, &skip), (false, vec!["google_api_key"]));
        // A whole key and an index can be named too.
        let all = vec!["/images".to_owned(), "/list/1".to_owned()];
        let text = format!(r#"{{"images": ["{key}"], "list": ["a", "{key}"]}}"#);
        assert_eq!(scan_metadata(&text, &all), (true, vec![]));
    }

    fn names(text: &str) -> Vec<&'static str> {
        scan_metadata(text, &[]).1
    }

    #[test]
    fn every_prefix_is_found_in_json_strings() {
        let body = "A1b2C3d4E5f6G7h8";
        for (name, prefix) in PATTERNS {
            let text = format!(r#"{{"note": "use {prefix}{body} please"}}"#);
            assert_eq!(names(&text), [*name], "{prefix}");
        }
    }

    #[test]
    fn word_boundary_and_minimum_body() {
        assert!(
            names(r#"{"a": "task-0123456789abcdefghij"}"#).is_empty(),
            "inside a word"
        );
        assert!(
            names(r#"{"a": "my_sk-0123456789abcdefghij"}"#).is_empty(),
            "after _"
        );
        assert!(names(r#"{"a": "the sk- prefix"}"#).is_empty(), "prose");
        assert!(
            names(r#"{"a": "sk-learn is a library"}"#).is_empty(),
            "short body"
        );
        assert!(
            names(r#"{"a": "éAKIA0123456789ABCDEF"}"#).is_empty(),
            "after a letter"
        );
        assert_eq!(
            names(r#"{"a": "(AKIA0123456789ABCDEF)"}"#),
            ["aws_access_key_id"]
        );
        assert_eq!(names("sk-0123456789abcdef"), ["openai_style_api_key"]);
        assert!(names("sk-0123456789abcde").is_empty(), "15 body characters");
    }

    #[test]
    fn escapes_do_not_hide_a_token_and_keys_are_scanned() {
        assert_eq!(
            names(r#"{"a": "line\nghp_0123456789abcdefghij0123456789abcdef"}"#),
            ["github_personal_access_token"]
        );
        assert_eq!(
            names(r#"{"xoxb-0123456789-0123456789": 1}"#),
            ["slack_bot_token"]
        );
    }

    #[test]
    fn validity_and_raw_text() {
        assert_eq!(
            scan_metadata(r#"{"a": [1, null, "x"]}"#, &[]),
            (true, vec![])
        );
        assert_eq!(scan_metadata("null", &[]), (true, vec![]));
        assert_eq!(scan_metadata("{not json", &[]), (false, vec![]));
        assert_eq!(scan_metadata("", &[]), (false, vec![]));
        assert_eq!(
            scan_metadata("token=github_pat_0123456789abcdefghij {", &[]),
            (false, vec!["github_fine_grained_pat"])
        );
    }

    #[test]
    fn several_patterns_are_sorted_and_deduplicated() {
        let text = r#"["sk_live_0123456789abcdefgh", "ghu_0123456789abcdefgh", "ghu_abcdefghij0123456789"]"#;
        assert_eq!(
            names(text),
            ["github_app_user_token", "stripe_live_secret_key"]
        );
    }

    #[test]
    fn odd_text_never_panics() {
        for text in [
            "sk-",
            "é",
            "AKIA",
            "\u{0}sk-é",
            "ghp_\u{1F600}0123456789abcdefgh",
        ] {
            let _ = scan_metadata(text, &[]);
        }
    }
}

//! [`Secret`]: a string that never shows itself. `Debug` and `Display` print `[redacted]`,
//! serialization writes `[redacted]` (so `config show` is safe), and the value is reachable only
//! through [`Secret::expose`], which call sites use at the last moment (the HTTP request, the
//! token comparison).

use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const REDACTED: &str = "[redacted]";

/// A secret string (webhook URL, admin token).
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(SecretString::from(value.into()))
    }

    /// The value. Never log or format the result.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Reads a secret from a file, trimming surrounding whitespace (files usually end in `\n`).
    pub fn from_file(path: &Path) -> std::io::Result<Secret> {
        let text = std::fs::read_to_string(path)?;
        Ok(Secret::new(text.trim()))
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// Where a configured secret comes from: an inline value or a file.
#[derive(Debug, Clone, Copy)]
pub enum SecretSource<'a> {
    /// Inline in the config (or env).
    Value(&'a Secret),
    /// A file path.
    File(&'a Path),
}

impl SecretSource<'_> {
    /// Resolves to the secret. Errors name the file, never the content.
    pub fn resolve(self) -> std::io::Result<Secret> {
        match self {
            SecretSource::Value(secret) => Ok(secret.clone()),
            SecretSource::File(path) => Secret::from_file(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value() {
        let secret = Secret::new("https://hooks.example/T000/B000/XXXX");
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(secret.expose(), "https://hooks.example/T000/B000/XXXX");
    }

    #[test]
    fn file_value_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), "s3cret");
    }
}

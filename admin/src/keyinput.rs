//! Reading a master key without it ever touching a command line (where `ps` and shell
//! history would keep it): from a file, or from standard input.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use im_shared::model::Secret;

/// Longest accepted key; real master keys are a few dozen characters.
const MAX_KEY_BYTES: usize = 1024;

/// Reads one key from `file`, or from stdin when `file` is `None` or `-`. One trailing
/// newline (what `echo` and editors add) is dropped; anything else must be printable.
pub fn read_key(file: Option<&Path>) -> Result<Secret> {
    parse_key(read_raw(file)?)
}

/// Shortest token-signing secret accepted: HS256 wants at least its hash size.
pub const MIN_TOKEN_SECRET_BYTES: usize = 32;

/// Reads a token-signing secret the same way, and insists on its length.
pub fn read_token_secret(file: Option<&Path>) -> Result<Secret> {
    let secret = parse_key(read_raw(file)?)?;
    if secret.expose().len() < MIN_TOKEN_SECRET_BYTES {
        bail!("a token secret must be at least {MIN_TOKEN_SECRET_BYTES} bytes");
    }
    Ok(secret)
}

fn read_raw(file: Option<&Path>) -> Result<String> {
    let mut raw = String::new();
    match file {
        Some(path) if path != Path::new("-") => {
            raw = std::fs::read_to_string(path)
                .with_context(|| format!("reading the key from {}", path.display()))?;
        }
        _ => {
            std::io::stdin()
                .take(MAX_KEY_BYTES as u64 + 2)
                .read_to_string(&mut raw)
                .context("reading the key from standard input")?;
        }
    }
    Ok(raw)
}

pub fn parse_key(mut raw: String) -> Result<Secret> {
    if raw.ends_with('\n') {
        raw.pop();
        if raw.ends_with('\r') {
            raw.pop();
        }
    }
    if raw.is_empty() {
        bail!("the key is empty");
    }
    if raw.len() > MAX_KEY_BYTES {
        bail!("the key is longer than {MAX_KEY_BYTES} bytes");
    }
    if raw.chars().any(char::is_control) {
        bail!("the key contains control characters (one trailing newline is allowed)");
    }
    Ok(Secret::new(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_newline_is_dropped_and_bad_keys_refused() {
        assert_eq!(parse_key("abc\n".into()).unwrap(), Secret::new("abc"));
        assert_eq!(parse_key("abc\r\n".into()).unwrap(), Secret::new("abc"));
        assert!(parse_key("\n".into()).is_err());
        assert!(parse_key("a\nb\n".into()).is_err());
        assert!(parse_key("x".repeat(1025)).is_err());
    }

    #[test]
    fn errors_never_quote_the_key() {
        let err = parse_key("topsecret\u{1}value".into()).unwrap_err();
        assert!(!format!("{err:#}").contains("topsecret"));
    }
}

//! Tencent Cloud IM's login credential, UserSig v2, as its own libraries make it
//! (`../shared/notes/tencent-im.md` in the workspace's notes): an HMAC-SHA256 over a
//! fixed text, put in a JSON object, zlib-compressed, base64-encoded with three
//! characters replaced. Pure: the caller supplies the clock.
//!
//! A UserSig is a bearer credential for the IM cloud that cannot be revoked before it
//! expires, so the expiry is the caller's to keep short.

use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::secret::Secret;
use super::Invalid;

/// The longest user id Tencent takes, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 32;

/// What a UserSig is made of.
#[derive(Debug, Clone, Copy)]
pub struct UserSigInput<'a> {
    pub sdk_app_id: u64,
    /// The user id (`TLS.identifier`): see [`check_identifier`].
    pub identifier: &'a str,
    /// When it was made, Unix seconds.
    pub time: u64,
    /// How long it is valid, in seconds from `time`.
    pub expire: u64,
}

/// A user id Tencent can take: printable ASCII (0x20-0x7e), 1 to 32 bytes. Anything else
/// cannot be a Tencent user, so it is refused rather than mangled.
pub fn check_identifier(field: &str, id: &str) -> Result<(), Invalid> {
    if id.is_empty() || id.len() > MAX_IDENTIFIER_BYTES {
        return Err(Invalid::new(format!(
            "{field} must be 1 to {MAX_IDENTIFIER_BYTES} bytes for Tencent Cloud IM"
        )));
    }
    if !id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(Invalid::new(format!(
            "{field} must be printable ASCII for Tencent Cloud IM"
        )));
    }
    Ok(())
}

/// The text the signature covers: four lines, each ending in `\n`.
fn content(input: &UserSigInput<'_>) -> String {
    format!(
        "TLS.identifier:{}\nTLS.sdkappid:{}\nTLS.time:{}\nTLS.expire:{}\n",
        input.identifier, input.sdk_app_id, input.time, input.expire
    )
}

/// `TLS.sig`: standard base64 (padded) of HMAC-SHA256 over [`content`], keyed with the
/// secret key's UTF-8 bytes (never hex-decoded).
pub fn tls_sig(key: &Secret, input: &UserSigInput<'_>) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key");
    mac.update(content(input).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The UserSig: the JSON object, zlib (RFC 1950), standard base64, then `+`→`*`,
/// `/`→`-`, `=`→`_`.
pub fn user_sig(key: &Secret, input: &UserSigInput<'_>) -> String {
    let object = json!({
        "TLS.ver": "2.0",
        "TLS.identifier": input.identifier,
        "TLS.sdkappid": input.sdk_app_id,
        "TLS.expire": input.expire,
        "TLS.time": input.time,
        "TLS.sig": tls_sig(key, input),
    });
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    zlib.write_all(object.to_string().as_bytes())
        .and_then(|()| zlib.flush())
        .expect("compressing into memory");
    let compressed = zlib.finish().expect("compressing into memory");
    STANDARD
        .encode(compressed)
        .chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::ZlibDecoder;
    use serde_json::Value;

    use super::*;

    const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";

    fn alice() -> UserSigInput<'static> {
        UserSigInput {
            sdk_app_id: 1_400_000_000,
            identifier: "alice",
            time: 1_700_000_000,
            expire: 86_400,
        }
    }

    /// The worked example of the notes: what both official libraries give with their
    /// clocks pinned.
    #[test]
    fn the_signature_is_the_official_libraries_one() {
        assert_eq!(
            tls_sig(&Secret::new(KEY), &alice()),
            "6GmjjJlI0ZfvdjC0qJyFjHknLqIVerI6rpJOgWxfg1k="
        );
    }

    /// Undoes the encoding the way a verifier does, independently of how it was made.
    fn decode(sig: &str) -> Value {
        let b64: String = sig
            .chars()
            .map(|c| match c {
                '*' => '+',
                '-' => '/',
                '_' => '=',
                other => other,
            })
            .collect();
        let compressed = STANDARD.decode(b64).unwrap();
        let mut json = String::new();
        ZlibDecoder::new(&compressed[..])
            .read_to_string(&mut json)
            .unwrap();
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn the_user_sig_carries_every_field_and_no_base64_specials() {
        let sig = user_sig(&Secret::new(KEY), &alice());
        assert!(!sig.contains(['+', '/', '=']), "{sig}");
        let object = decode(&sig);
        assert_eq!(object["TLS.ver"], "2.0");
        assert_eq!(object["TLS.identifier"], "alice");
        assert_eq!(object["TLS.sdkappid"], 1_400_000_000u64);
        assert_eq!(object["TLS.time"], 1_700_000_000u64);
        assert_eq!(object["TLS.expire"], 86_400);
        assert_eq!(
            object["TLS.sig"],
            "6GmjjJlI0ZfvdjC0qJyFjHknLqIVerI6rpJOgWxfg1k="
        );
    }

    #[test]
    fn another_key_app_or_user_signs_differently() {
        let base = tls_sig(&Secret::new(KEY), &alice());
        assert_ne!(tls_sig(&Secret::new("other"), &alice()), base);
        let other_app = UserSigInput {
            sdk_app_id: 1_400_000_001,
            ..alice()
        };
        assert_ne!(tls_sig(&Secret::new(KEY), &other_app), base);
        let bob = UserSigInput {
            identifier: "bob",
            ..alice()
        };
        assert_ne!(tls_sig(&Secret::new(KEY), &bob), base);
    }

    #[test]
    fn identifiers_tencent_cannot_take_are_refused() {
        for ok in ["alice", "a b", "~!", &"x".repeat(32)] {
            assert!(check_identifier("client_id", ok).is_ok(), "{ok:?}");
        }
        for bad in ["", &"x".repeat(33), "李", "tab\t", "é", "\u{7f}"] {
            assert!(check_identifier("client_id", bad).is_err(), "{bad:?}");
        }
    }
}

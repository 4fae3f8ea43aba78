//! The stand-in's own check of an admin UserSig v2, written from the notes
//! (`../shared/notes/tencent-im.md`, "UserSig v2") and Tencent's libraries, and on purpose
//! sharing no code with the service's `im_shared::model::usersig`: a stand-in that called
//! the code under test would accept whatever that code makes, right or wrong.
//!
//! Undo Tencent's base64 variant (`*`→`+`, `-`→`/`, `_`→`=`), decode standard base64,
//! inflate zlib (RFC 1950), parse the JSON object, recompute HMAC-SHA256 over the content
//! lines with the app's key (its UTF-8 bytes) and compare in constant time.
//!
//! The order of the checks is the stand-in's (Tencent does not document one): first what
//! can be read (70003), then whose it is (70014, 70013), then the signature (70009), and
//! only then the expiry (70001), so that a time nobody signed is never reported as
//! "expired".

use std::io::Read;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flate2::read::ZlibDecoder;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// Why a UserSig is refused: Tencent's code and a text for `ErrorInfo` (which never
/// repeats the UserSig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SigError {
    pub code: u32,
    pub info: String,
}

pub(super) const EXPIRED: u32 = 70001;
pub(super) const UNPARSABLE: u32 = 70003;
pub(super) const WRONG_KEY: u32 = 70009;
pub(super) const WRONG_IDENTIFIER: u32 = 70013;
pub(super) const WRONG_SDK_APP_ID: u32 = 70014;

/// A compressed UserSig is a few hundred bytes; inflating more than this is not one.
const MAX_INFLATED_BYTES: u64 = 16 * 1024;

fn refuse(code: u32, info: impl Into<String>) -> SigError {
    SigError {
        code,
        info: info.into(),
    }
}

/// Checks `user_sig` as the admin `identifier`'s credential for app `sdk_app_id` keyed with
/// `key`, at Unix time `now`.
pub(super) fn verify(
    user_sig: &str,
    sdk_app_id: u64,
    key: &str,
    identifier: &str,
    now: u64,
) -> Result<(), SigError> {
    let object = decode(user_sig)?;
    let string = |name: &str| match object.get(name) {
        Some(Value::String(s)) => Ok(s.as_str()),
        _ => Err(refuse(
            UNPARSABLE,
            format!("usersig: {name} is missing or not a string"),
        )),
    };
    let integer = |name: &str| {
        object.get(name).and_then(Value::as_u64).ok_or_else(|| {
            refuse(
                UNPARSABLE,
                format!("usersig: {name} is missing or not an integer"),
            )
        })
    };
    if string("TLS.ver")? != "2.0" {
        return Err(refuse(UNPARSABLE, "usersig: TLS.ver is not 2.0"));
    }
    let (sig_identifier, sig_app, time, expire) = (
        string("TLS.identifier")?,
        integer("TLS.sdkappid")?,
        integer("TLS.time")?,
        integer("TLS.expire")?,
    );
    let sig = STANDARD
        .decode(string("TLS.sig")?)
        .map_err(|_| refuse(UNPARSABLE, "usersig: TLS.sig is not base64"))?;
    let userbuf = match object.get("TLS.userbuf") {
        None => None,
        Some(Value::String(buf)) => Some(buf.as_str()),
        Some(_) => return Err(refuse(UNPARSABLE, "usersig: TLS.userbuf is not a string")),
    };
    if sig_app != sdk_app_id {
        return Err(refuse(
            WRONG_SDK_APP_ID,
            "usersig: its sdkappid is not the request's",
        ));
    }
    if sig_identifier != identifier {
        return Err(refuse(
            WRONG_IDENTIFIER,
            "usersig: its identifier is not the request's",
        ));
    }
    let mut content =
        format!("TLS.identifier:{sig_identifier}\nTLS.sdkappid:{sig_app}\nTLS.time:{time}\nTLS.expire:{expire}\n");
    if let Some(buf) = userbuf {
        content.push_str(&format!("TLS.userbuf:{buf}\n"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(content.as_bytes());
    mac.verify_slice(&sig).map_err(|_| {
        refuse(
            WRONG_KEY,
            "usersig: the signature does not match the app's key",
        )
    })?;
    if now > time.saturating_add(expire) {
        return Err(refuse(EXPIRED, "usersig: expired"));
    }
    Ok(())
}

/// Tencent's base64 variant, zlib, then a JSON object.
fn decode(user_sig: &str) -> Result<Map<String, Value>, SigError> {
    let standard: String = user_sig
        .chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            other => other,
        })
        .collect();
    let compressed = STANDARD
        .decode(standard)
        .map_err(|_| refuse(UNPARSABLE, "usersig: not Tencent's base64"))?;
    let mut json = Vec::new();
    ZlibDecoder::new(compressed.as_slice())
        .take(MAX_INFLATED_BYTES)
        .read_to_end(&mut json)
        .map_err(|_| refuse(UNPARSABLE, "usersig: not zlib data"))?;
    match serde_json::from_slice(&json) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(refuse(UNPARSABLE, "usersig: not a JSON object")),
    }
}

//! Request headers that make a write conditional (`If-Match`) or repeatable
//! (`Idempotency-Key`).

use axum::http::HeaderMap;

use crate::api::error::ApiError;
use crate::model::{GroupSpec, Idempotency};

pub(super) const IDEMPOTENT_REPLAYED: axum::http::HeaderName =
    axum::http::HeaderName::from_static("idempotent-replayed");

/// `If-Match`: `None` when absent or `*` (the group as it is now); otherwise the
/// versions its ETags name. If-Match compares strongly (RFC 9110), so a weak or foreign
/// ETag matches no version and the write answers 412.
pub(super) fn if_match(headers: &HeaderMap) -> Result<Option<Vec<u64>>, ApiError> {
    const MALFORMED: &str = "If-Match must be * or quoted ETags such as \"3\"";
    let mut versions = Vec::new();
    let mut present = false;
    for value in headers.get_all(axum::http::header::IF_MATCH) {
        present = true;
        let value = value.to_str().map_err(|_| ApiError::bad(MALFORMED))?;
        for tag in value.split(',').map(str::trim) {
            if tag == "*" {
                return Ok(None);
            }
            let (weak, quoted) = match tag.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, tag),
            };
            let opaque = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .filter(|q| !q.contains('"'))
                .ok_or_else(|| ApiError::bad(MALFORMED))?;
            if let (false, Ok(v)) = (weak, opaque.parse::<u64>()) {
                versions.push(v);
            }
        }
    }
    if !present {
        return Ok(None);
    }
    versions.sort_unstable();
    versions.dedup();
    if versions.len() > 20 {
        return Err(ApiError::bad("If-Match may name at most 20 ETags"));
    }
    if versions.is_empty() {
        versions.push(0); // no group is ever at version 0: nothing matches
    }
    Ok(Some(versions))
}

/// `Idempotency-Key` on create, with a fingerprint of the request as validated (so the
/// same request in another member order or encoding is still the same request).
pub(super) fn idempotency(
    headers: &HeaderMap,
    spec: &GroupSpec,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| (0x20..=0x7e).contains(&b)))
        .ok_or_else(|| {
            ApiError::bad("Idempotency-Key must be 1 to 255 printable ASCII characters")
        })?;
    Ok(Some(Idempotency::of_create(key, spec)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DEFAULT_MAX_MEMBERS;
    use axum::http::{HeaderValue, StatusCode};

    fn with(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn if_match_reads_strong_etags_star_and_lists() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(if_match(&with("if-match", &["*"])).unwrap(), None);
        assert_eq!(
            if_match(&with("if-match", &["\"7\""])).unwrap(),
            Some(vec![7])
        );
        assert_eq!(
            if_match(&with("if-match", &["\"9\", \"3\"", "\"3\""])).unwrap(),
            Some(vec![3, 9])
        );
        // Weak and foreign tags match nothing: version 0, which no group has.
        for never in ["W/\"7\"", "\"abc\"", "\"\""] {
            assert_eq!(
                if_match(&with("if-match", &[never])).unwrap(),
                Some(vec![0])
            );
        }
        for bad in ["7", "\"7", "W/7", "\"a\"b\"", ""] {
            assert_eq!(
                if_match(&with("if-match", &[bad])).unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn idempotency_keys_are_bounded_and_fingerprints_follow_the_request() {
        let spec = |name: &str| GroupSpec {
            name: name.into(),
            max_members: DEFAULT_MAX_MEMBERS,
            ..GroupSpec::default()
        };
        assert!(idempotency(&HeaderMap::new(), &spec("g"))
            .unwrap()
            .is_none());
        let key = |k: &str| with("idempotency-key", &[k]);
        let a = idempotency(&key("k-1"), &spec("g")).unwrap().unwrap();
        let b = idempotency(&key("k-1"), &spec("g")).unwrap().unwrap();
        let c = idempotency(&key("k-1"), &spec("h")).unwrap().unwrap();
        assert_eq!(a.key, "k-1");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        for bad in [String::new(), "k".repeat(256), "tab\there".into()] {
            assert!(idempotency(&key(&bad), &spec("g")).is_err(), "{bad:?}");
        }
        assert!(idempotency(&key(&"k".repeat(255)), &spec("g")).is_ok());
    }
}

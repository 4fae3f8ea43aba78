//! `?limit=&cursor=` on the two listings; cursors are opaque and bound to their listing.

use crate::api::error::ApiError;

/// `?limit=&cursor=`: limit 1..=100 (default 50); the cursor is the opaque
/// `next_cursor` of the previous page.
pub(super) struct Paging {
    pub(super) limit: u32,
    pub(super) cursor: Option<String>,
}

pub(super) const CURSOR_MEMBER: &str = "m:";

pub(super) const CURSOR_GROUP: &str = "g:";

pub(super) fn paging(query: Option<String>, kind: &str) -> Result<Paging, ApiError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
            .map_err(|_| ApiError::bad("the query string is not valid url-encoded text"))?;
    let mut limit = 50;
    let mut cursor = None;
    for (k, v) in pairs {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| ApiError::bad("limit must be a whole number from 1 to 100"))?
            }
            "cursor" => {
                let decoded = URL_SAFE_NO_PAD
                    .decode(v.as_bytes())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|c| c.strip_prefix(kind).map(str::to_owned))
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| ApiError::bad("cursor is not a cursor this listing returned"))?;
                cursor = Some(decoded);
            }
            _ => {}
        }
    }
    Ok(Paging { limit, cursor })
}

pub(super) fn cursor(kind: &str, value: Option<String>) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    value.map(|v| URL_SAFE_NO_PAD.encode(format!("{kind}{v}")))
}

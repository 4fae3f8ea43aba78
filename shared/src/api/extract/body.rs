//! Request bodies: a size-limited reader, and one parser that takes JSON or
//! `application/x-www-form-urlencoded` into the same typed struct.
//!
//! Errors follow one rule: a body that cannot be read as its content type is a 400,
//! one that can but has the wrong fields or types is a 422, an unknown content type a
//! 415 and an oversized body a 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::model::MemberList;

/// The raw body, refused with 413 past the configured limit.
pub struct LimitedBody(pub Bytes);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.limits.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        match axum::body::to_bytes(req.into_body(), limit).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(err) => {
                let too_large =
                    std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| {
                        e.source()
                    })
                    .any(|e| e.is::<http_body_util::LengthLimitError>());
                if too_large {
                    Err(ApiError::PayloadTooLarge(limit))
                } else {
                    Err(ApiError::bad("the request body could not be read"))
                }
            }
        }
    }
}

enum Kind {
    Json,
    Form,
}

fn kind(headers: &HeaderMap, body: &[u8]) -> Result<Kind, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        // No content type: take what the body looks like rather than refuse it.
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        return Ok(if first == Some(&b'{') {
            Kind::Json
        } else {
            Kind::Form
        });
    };
    let essence = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedMediaType)?
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Kind::Json),
        e if e.starts_with("application/") && e.ends_with("+json") => Ok(Kind::Json),
        "application/x-www-form-urlencoded" => Ok(Kind::Form),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// Parses a body of either content type into `T`.
pub fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    match kind(headers, body)? {
        Kind::Json => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad(format!("the body is not valid JSON: {e}")))?;
            if !value.is_object() {
                return Err(ApiError::Unprocessable(
                    "the body must be a JSON object".into(),
                ));
            }
            typed(value)
        }
        Kind::Form => parse_form(body),
    }
}

/// Parses `application/x-www-form-urlencoded` (a body or a query string) into `T`.
pub fn parse_form<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw)
        .map_err(|_| ApiError::bad("the form body is not valid url-encoded text"))?;
    let mut map = Map::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), Value::String(v)).is_some() {
            return Err(ApiError::bad(format!("{k} is given more than once")));
        }
    }
    typed(Value::Object(map))
}

fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// `member_client_ids` as the documented colon-separated string or a JSON array.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a colon-separated string or an array of strings"
)]
pub enum MemberIds {
    Joined(String),
    List(Vec<String>),
}

impl Default for MemberIds {
    fn default() -> Self {
        Self::List(Vec::new())
    }
}

impl MemberIds {
    pub fn normalize(&self, max_ids: usize, max_chars: usize) -> Result<MemberList, ApiError> {
        const FIELD: &str = "member_client_ids";
        match self {
            Self::Joined(s) => Ok(MemberList::parse_joined(FIELD, s, max_ids, max_chars)?),
            Self::List(v) => Ok(MemberList::from_ids(
                FIELD,
                v.iter().map(String::as_str),
                max_ids,
                max_chars,
            )?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        group_name: String,
        #[serde(default)]
        member_client_ids: Option<MemberIds>,
    }

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    fn status(r: Result<Body, ApiError>) -> u16 {
        r.err().map(|e| e.status().as_u16()).unwrap_or(200)
    }

    fn members(b: &Body) -> String {
        b.member_client_ids
            .clone()
            .unwrap_or_default()
            .normalize(100, 64)
            .unwrap()
            .joined()
    }

    #[test]
    fn json_with_string_or_array_members() {
        let b: Body = parse(
            &headers("application/json; charset=utf-8"),
            br#"{"group_name":"g","member_client_ids":"b:a"}"#,
        )
        .unwrap();
        assert_eq!(members(&b), "a:b");
        let b: Body = parse(
            &headers("application/json"),
            br#"{"group_name":"g","member_client_ids":["b","a","b"]}"#,
        )
        .unwrap();
        assert_eq!(members(&b), "a:b");
    }

    #[test]
    fn form_bodies_decode_percent_escapes() {
        let b: Body = parse(
            &headers("application/x-www-form-urlencoded"),
            b"group_name=%E4%BD%A0%E5%A5%BD+g&member_client_ids=o12%3Au232%3Ap23",
        )
        .unwrap();
        assert_eq!(b.group_name, "你好 g");
        assert_eq!(members(&b), "o12:p23:u232");
    }

    #[test]
    fn missing_content_type_is_sniffed() {
        let b: Body = parse(&HeaderMap::new(), br#" {"group_name":"j"}"#).unwrap();
        assert_eq!(b.group_name, "j");
        let b: Body = parse(&HeaderMap::new(), b"group_name=f").unwrap();
        assert_eq!(b.group_name, "f");
    }

    #[test]
    fn error_statuses() {
        let json = headers("application/json");
        assert_eq!(status(parse(&json, b"{not json")), 400);
        assert_eq!(status(parse(&json, b"[1,2]")), 422);
        assert_eq!(status(parse(&json, br#"{"group_name":5}"#)), 422);
        assert_eq!(status(parse(&json, br#"{}"#)), 422);
        assert_eq!(
            status(parse(&json, br#"{"group_name":"g","extra":1}"#)),
            422
        );
        assert_eq!(
            status(parse(&json, br#"{"group_name":"g","member_client_ids":7}"#)),
            422
        );
        assert_eq!(status(parse(&headers("text/plain"), b"group_name=g")), 415);
        assert_eq!(status(parse(&headers("multipart/form-data"), b"")), 415);
        let form = headers("application/x-www-form-urlencoded");
        assert_eq!(status(parse(&form, b"group_name=a&group_name=b")), 400);
        assert_eq!(status(parse(&form, b"member_client_ids=a")), 422);
    }

    proptest! {
        #[test]
        fn no_body_panics(body in prop::collection::vec(any::<u8>(), 0..512), json in any::<bool>()) {
            let h = headers(if json { "application/json" } else { "application/x-www-form-urlencoded" });
            let _ = parse::<Body>(&h, &body);
        }

        #[test]
        fn accepted_form_bodies_round_trip(name in "[^\u{0}]{1,40}", ids in prop::collection::vec("[a-z0-9]{1,8}", 0..10)) {
            let encoded = serde_urlencoded::to_string([
                ("group_name", name.as_str()),
                ("member_client_ids", ids.join(":").as_str()),
            ]).unwrap();
            let b: Body = parse(&headers("application/x-www-form-urlencoded"), encoded.as_bytes()).unwrap();
            prop_assert_eq!(&b.group_name, &name);
            let mut expected = ids.clone();
            expected.sort();
            expected.dedup();
            prop_assert_eq!(members(&b), expected.join(":"));
        }
    }
}

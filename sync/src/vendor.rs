//! The IM cloud's realtime REST API 1.2 (`/1.2/rtm/conversations`), as the vendor
//! documents it (`../shared/notes/im-cloud-rest.md` in the workspace's notes): the calls
//! the mirror makes, each retried on 429, 5xx, time-outs and dropped connections with
//! capped, jittered back-off inside a bounded time.
//!
//! The app's master key is the credential (`X-LC-Key: <key>,master`). It is sent as a
//! sensitive header and never enters an error, a log line or a panic message: errors
//! carry the status, the vendor's `code` and its `error` text only.

use std::time::{Duration, Instant};

use im_shared::model::Secret;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;

/// The vendor documents no limit on `client_ids` per call; batches of this size keep each
/// request small whatever it is.
const CLIENT_IDS_PER_CALL: usize = 50;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VendorError {
    /// An answer that retrying cannot change (a conversation that no longer exists, a
    /// rejected key, a request the vendor refuses).
    #[error("the IM cloud refused the request: HTTP {status}{}: {message}", code.map(|c| format!(", code {c}")).unwrap_or_default())]
    Refused {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    /// Still failing (429, 5xx, time-outs, dropped connections) when the time allowed
    /// for retries ran out; a later try may succeed.
    #[error("the IM cloud is unavailable: {0}")]
    Unavailable(String),
    /// The app is over the IM cloud's quota (429 until the time allowed for retries ran
    /// out, or a `Retry-After` beyond it): nothing for this app should be sent for
    /// `retry_after`. The mirror defers the app's records rather than hold the shard.
    #[error("the IM cloud is rate-limiting the app for {} s: {what}", retry_after.as_secs())]
    RateLimited { what: String, retry_after: Duration },
}

impl VendorError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }

    /// How long the app should send nothing, when the IM cloud is rate-limiting it.
    pub fn rate_limited(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// How long a 429 without `Retry-After` lasts: the vendor documents "about a minute".
pub const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(60);

/// How hard one call tries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Time-out of one HTTP attempt.
    pub attempt_timeout: Duration,
    /// All attempts of one call end within this.
    pub budget: Duration,
    /// Back-off before the second attempt; doubles up to `max_backoff`, with full jitter.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a 429 without `Retry-After` pauses the app (see [`RATE_LIMIT_PAUSE`]).
    pub rate_limit_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(5),
            budget: Duration::from_secs(20),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
            rate_limit_pause: RATE_LIMIT_PAUSE,
        }
    }
}

/// One HTTP client for every app and every cloud (built once per process: connection
/// pools and the TLS configuration are reused warm).
#[derive(Clone)]
pub struct Vendor {
    pub(crate) http: reqwest::Client,
    pub(crate) policy: RetryPolicy,
}

impl Vendor {
    pub fn new(policy: RetryPolicy) -> Result<Self, reqwest::Error> {
        // The AWS SDK already links aws-lc-rs for its TLS; make it rustls' provider for
        // this client too, rather than linking a second one.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(policy.attempt_timeout)
            .connect_timeout(policy.attempt_timeout.min(Duration::from_secs(3)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http, policy })
    }

    /// The calls for one app, at `server` (an origin: `https://host[:port]`).
    pub fn app(&self, server: &str, app_id: &str, master_key: &Secret) -> AppApi<'_> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(app_id) {
            headers.insert("X-LC-Id", v);
        }
        if let Ok(mut v) = HeaderValue::from_str(&format!("{},master", master_key.expose())) {
            v.set_sensitive(true);
            headers.insert("X-LC-Key", v);
        }
        AppApi {
            vendor: self,
            base: format!("{}/1.2/rtm/conversations", server.trim_end_matches('/')),
            headers,
        }
    }
}

pub struct AppApi<'a> {
    vendor: &'a Vendor,
    base: String,
    headers: HeaderMap,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<i64>,
    error: Option<String>,
}

/// Everything but RFC 3986's unreserved characters.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn path_segment(id: &str) -> String {
    // Conversation ids are the vendor's own (24 hex digits), but a linked id comes from an
    // app's backend: escape everything outside the unreserved set.
    utf8_percent_encode(id, NOT_UNRESERVED).to_string()
}

impl AppApi<'_> {
    fn conversation_url(&self, id: &str, tail: &str) -> String {
        format!("{}/{}{tail}", self.base, path_segment(id))
    }

    /// One call, retried while retrying can help. `what` names it in errors and logs.
    async fn call(
        &self,
        what: &str,
        method: Method,
        url: &str,
        query: Option<&[(&str, String)]>,
        body: Option<&Value>,
    ) -> Result<Value, VendorError> {
        self.call_within(what, method, url, query, body, self.vendor.policy.budget)
            .await
    }

    /// [`Self::call`] with its own time allowance; `Duration::ZERO` tries once.
    async fn call_within(
        &self,
        what: &str,
        method: Method,
        url: &str,
        query: Option<&[(&str, String)]>,
        body: Option<&Value>,
        budget: Duration,
    ) -> Result<Value, VendorError> {
        let policy = RetryPolicy {
            budget,
            ..self.vendor.policy
        };
        let started = Instant::now();
        let mut backoff = policy.first_backoff;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut limited = false;
            let mut request = self
                .vendor
                .http
                .request(method.clone(), url)
                .headers(self.headers.clone());
            if let Some(q) = query {
                request = request.query(q);
            }
            if let Some(b) = body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(b.to_string());
            }
            let (why, retry_after) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match response.bytes().await {
                        Ok(bytes) if status.is_success() => {
                            return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
                        }
                        Ok(bytes) => {
                            let parsed: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
                            let code = parsed.as_ref().and_then(|b| b.code);
                            let text: String = parsed
                                .and_then(|b| b.error)
                                .unwrap_or_else(|| status.canonical_reason().unwrap_or("").into())
                                .chars()
                                .take(200)
                                .collect();
                            if !retryable(status) {
                                return Err(VendorError::Refused {
                                    status: status.as_u16(),
                                    code,
                                    message: text,
                                });
                            }
                            limited = status == StatusCode::TOO_MANY_REQUESTS;
                            (format!("HTTP {}: {text}", status.as_u16()), retry_after)
                        }
                        Err(e) => (format!("reading the answer: {}", describe(&e)), None),
                    }
                }
                Err(e) => (describe(&e), None),
            };
            let elapsed = started.elapsed();
            let wait =
                retry_after.unwrap_or_else(|| rand::rng().random_range(Duration::ZERO..=backoff));
            if elapsed + wait + policy.attempt_timeout / 4 > policy.budget {
                let why = format!(
                    "{what}: {why} (after {attempt} attempts in {} ms)",
                    elapsed.as_millis()
                );
                // Still over the quota: the app's later calls would be refused too.
                return Err(if limited {
                    VendorError::RateLimited {
                        what: why,
                        retry_after: retry_after.unwrap_or(policy.rate_limit_pause),
                    }
                } else {
                    VendorError::Unavailable(why)
                });
            }
            tracing::info!(call = what, attempt, wait_ms = wait.as_millis() as u64, why = %why, "IM cloud call failed; retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }

    /// The conversation an earlier try made for `group_id`, if any: the one whose
    /// attributes carry both the group id and `marker`, the value the store wrote before
    /// that try's create (the oldest, should there be several). A conversation is never
    /// taken for the group's on `attr.group_id` alone: any client can set that.
    pub async fn find_group_conversation(
        &self,
        group_id: u64,
        marker: &str,
    ) -> Result<Option<String>, VendorError> {
        let filter = json!({ "attr.group_id": group_id, "attr.mirror_marker": marker }).to_string();
        // The documented parameters are where, skip and limit (no order): sorted here.
        let query = [("where", filter), ("limit", "10".to_owned())];
        let answer = self
            .call(
                "query conversations",
                Method::GET,
                &self.base,
                Some(&query),
                None,
            )
            .await?;
        let mut found: Vec<(String, String)> = answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            // The vendor's query is trusted to filter, but the marker is checked here too:
            // acting on another conversation would evict its members.
            .filter(|c| {
                c["attr"]["mirror_marker"].as_str() == Some(marker)
                    && c["attr"]["group_id"].as_u64() == Some(group_id)
            })
            .filter_map(|c| {
                Some((
                    c["createdAt"].as_str().unwrap_or_default().to_owned(),
                    c["objectId"].as_str()?.to_owned(),
                ))
            })
            .collect();
        found.sort();
        Ok(found.into_iter().next().map(|(_, id)| id))
    }

    /// The conversation of `group_id`: the one an earlier try made (found by `marker`),
    /// or a new one with `members`. Answers its id and whether it was made now. A create
    /// whose answer was lost may still have happened, so it is never simply sent again:
    /// each new try first looks for it.
    pub async fn ensure_group_conversation(
        &self,
        group_id: u64,
        marker: &str,
        name: &str,
        members: &[String],
    ) -> Result<(String, bool), VendorError> {
        let policy = self.vendor.policy;
        let started = Instant::now();
        let mut backoff = policy.first_backoff;
        loop {
            if let Some(id) = self.find_group_conversation(group_id, marker).await? {
                return Ok((id, false));
            }
            let body = json!({
                "name": name,
                "m": members,
                "attr": { "type": "group", "group_id": group_id, "mirror_marker": marker },
            });
            let answer = self
                .call_within(
                    "create conversation",
                    Method::POST,
                    &self.base,
                    None,
                    Some(&body),
                    Duration::ZERO,
                )
                .await;
            match answer {
                Ok(answer) => {
                    return answer["objectId"]
                        .as_str()
                        .map(|id| (id.to_owned(), true))
                        .ok_or_else(|| VendorError::Refused {
                            status: 200,
                            code: None,
                            message: "the created conversation has no objectId".into(),
                        })
                }
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) if started.elapsed() + backoff > policy.budget => return Err(e),
                Err(_) => {
                    let wait = rand::rng().random_range(Duration::ZERO..=backoff);
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(policy.max_backoff);
                }
            }
        }
    }

    pub async fn rename(&self, conversation: &str, name: &str) -> Result<(), VendorError> {
        let url = self.conversation_url(conversation, "");
        self.call(
            "rename conversation",
            Method::PUT,
            &url,
            None,
            Some(&json!({ "name": name })),
        )
        .await
        .map(drop)
    }

    /// Deletes the conversation; one that is already gone is not an error.
    pub async fn delete_conversation(&self, conversation: &str) -> Result<(), VendorError> {
        let url = self.conversation_url(conversation, "");
        match self
            .call("delete conversation", Method::DELETE, &url, None, None)
            .await
        {
            Err(VendorError::Refused { status: 404, .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Adds (`add`) or removes clients; the vendor treats members as a set, so a repeat
    /// changes nothing. A chunk the vendor refuses as a bad request is split until the
    /// ids it refuses stand alone: one id the vendor cannot take fails only itself, and
    /// is answered (with the vendor's words) instead of stopping the others.
    pub async fn change_members(
        &self,
        conversation: &str,
        ids: &[String],
        add: bool,
    ) -> Result<Vec<Refusal>, VendorError> {
        let url = self.conversation_url(conversation, "/members");
        let (what, method) = if add {
            ("add members", Method::POST)
        } else {
            ("remove members", Method::DELETE)
        };
        let mut refused = Vec::new();
        let mut todo: Vec<&[String]> = ids.chunks(CLIENT_IDS_PER_CALL).rev().collect();
        while let Some(chunk) = todo.pop() {
            let answer = self
                .call(
                    what,
                    method.clone(),
                    &url,
                    None,
                    Some(&json!({ "client_ids": chunk })),
                )
                .await;
            match answer {
                Ok(_) => {}
                Err(e) if refuses_ids(&e) && chunk.len() > 1 => {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    todo.push(b);
                    todo.push(a);
                }
                Err(e) if refuses_ids(&e) => refused.push(Refusal {
                    client_id: chunk[0].clone(),
                    why: e.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(refused)
    }

    /// Makes the conversation's members exactly `members`: removes the others first
    /// (whatever an add then meets, nobody keeps access the group took away), then adds
    /// the missing. Answers what it changed, and the ids the vendor refused.
    pub async fn set_members(
        &self,
        conversation: &str,
        members: &[String],
    ) -> Result<MemberRepair, VendorError> {
        let have = self.members(conversation).await?;
        let missing: Vec<String> = members
            .iter()
            .filter(|m| !have.contains(m))
            .cloned()
            .collect();
        let extra: Vec<String> = have.into_iter().filter(|m| !members.contains(m)).collect();
        let mut refused = Vec::new();
        if !extra.is_empty() {
            refused.extend(self.change_members(conversation, &extra, false).await?);
        }
        if !missing.is_empty() {
            refused.extend(self.change_members(conversation, &missing, true).await?);
        }
        Ok(MemberRepair {
            added: missing,
            removed: extra,
            refused,
        })
    }

    pub async fn members(&self, conversation: &str) -> Result<Vec<String>, VendorError> {
        let url = self.conversation_url(conversation, "/members");
        let answer = self
            .call("list members", Method::GET, &url, None, None)
            .await?;
        Ok(answer["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect())
    }

    /// One page of the `_Conversation` class from the storage API's scan
    /// (`GET /1.1/scan/classes/_Conversation`, 1,000 a page, after `cursor`): its records,
    /// and the cursor of the next page (`None` after the last). For `im-admin import
    /// leancloud --scan`; retried as every call is.
    pub async fn scan_conversations(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), VendorError> {
        let server = self.base.trim_end_matches("/1.2/rtm/conversations");
        let url = format!("{server}/1.1/scan/classes/_Conversation");
        let mut query = vec![("limit", "1000".to_owned())];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        let mut answer = self
            .call("scan conversations", Method::GET, &url, Some(&query), None)
            .await?;
        let records = match answer["results"].take() {
            Value::Array(records) => records,
            _ => Vec::new(),
        };
        let next = answer["cursor"].as_str().map(str::to_owned);
        Ok((records, next))
    }

    /// Posts `message` (the vendor's typed-message JSON, as a string) from `from_client`.
    pub async fn send_message(
        &self,
        conversation: &str,
        from_client: &str,
        message: &str,
    ) -> Result<(), VendorError> {
        let url = self.conversation_url(conversation, "/messages");
        self.call(
            "send message",
            Method::POST,
            &url,
            None,
            Some(&json!({ "from_client": from_client, "message": message })),
        )
        .await
        .map(drop)
    }
}

/// A member id the vendor would not take (its answer, in words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub client_id: String,
    pub why: String,
}

/// What [`AppApi::set_members`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberRepair {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Ids the vendor refused (not added, or not removed), each with its answer.
    pub refused: Vec<Refusal>,
}

/// Refused as a bad request: something in the body, which for a member change is its
/// ids (a missing conversation is 404, a bad key 401: those concern every id alike).
fn refuses_ids(e: &VendorError) -> bool {
    matches!(e, VendorError::Refused { status: 400, .. })
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// A transport error in words, without the URL's query (it can name a group id, never a
/// key, but stays short) and without headers.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_body() || e.is_decode() {
        "the answer broke off".into()
    } else {
        "the connection failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_escaped_as_one_path_segment() {
        assert_eq!(path_segment("5f2a9c0e1b"), "5f2a9c0e1b");
        assert_eq!(path_segment("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for s in [429, 408, 500, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert!(!retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn refusals_never_carry_more_than_the_vendors_words() {
        let e = VendorError::Refused {
            status: 401,
            code: Some(401),
            message: "Unauthorized.".into(),
        };
        assert_eq!(
            e.to_string(),
            "the IM cloud refused the request: HTTP 401, code 401: Unauthorized."
        );
        assert!(e.is_permanent());
        assert!(!VendorError::Unavailable("x".into()).is_permanent());
    }
}

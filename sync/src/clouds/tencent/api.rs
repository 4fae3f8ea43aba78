//! Tencent Cloud IM's server REST API (`../shared/notes/tencent-im.md` in the workspace's
//! notes): `POST https://<domain>/v4/<service>/<command>?sdkappid=..&identifier=..&usersig=..&random=..&contenttype=json`,
//! the outcome in the body (`ActionStatus`, `ErrorCode`, `ErrorInfo`), not the status.
//!
//! The credential is the app admin's UserSig, made here from the app's secret key, and it
//! travels in the query string: a request URL is therefore never logged, and errors carry
//! the command, the vendor's code and its text only (reqwest's own errors, which name the
//! URL, are put in words by `vendor::describe`).
//!
//! Every attempt waits for the app's pacer first, so the mirror never calls faster than
//! the app's `max_calls_per_second`; rate-limit answers, 10002, 5xx, time-outs and
//! dropped connections are retried with capped, jittered back-off within the policy's
//! budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::DefaultDirectRateLimiter;
use im_shared::model::usersig::{user_sig, UserSigInput};
use im_shared::model::{Secret, TencentCloud};
use rand::Rng;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::vendor::{describe, Refusal, Vendor, VendorError};

/// Accounts per `multiaccount_import`.
pub const IMPORT_PER_CALL: usize = 100;
/// Members per `create_group`.
pub const CREATE_MEMBERS_PER_CALL: usize = 100;
/// Members per `add_group_member`.
pub const ADD_PER_CALL: usize = 300;
/// Members per `delete_group_member`.
pub const DELETE_PER_CALL: usize = 100;
/// Members per page of `get_group_member_info`.
pub const MEMBER_PAGE: usize = 100;

/// How long the admin UserSig made for one run of calls is valid: a run ends within the
/// invocation's time-out (15 minutes at most), and a short life keeps a leaked query
/// string (a proxy's log, say) worth little.
const ADMIN_SIG_SECONDS: u64 = 3600;

/// The answers retrying can change: rate limits (REST layer 60007/60011, group layer
/// 10006/10023) and the group layer's internal error.
const RETRIED_CODES: [i64; 5] = [60007, 60011, 10006, 10023, 10002];
/// Of those, the rate limits: still there when a call's retries are spent, the app is
/// over its quota, and the mirror defers its records rather than hold the shard.
const RATE_LIMIT_CODES: [i64; 4] = [60007, 60011, 10006, 10023];
/// The group id is used by another owner than this app's admin.
pub const GROUP_ID_TAKEN: i64 = 10021;
/// The group id was made by this app's admin already (an earlier try).
pub const GROUP_ID_OURS: i64 = 10025;
/// The group is gone or the id invalid.
pub const GROUP_GONE: [i64; 2] = [10010, 10015];

pub struct TencentApi<'a> {
    vendor: &'a Vendor,
    settings: &'a TencentCloud,
    pacer: Arc<DefaultDirectRateLimiter>,
    /// The query's credential part, made once per run.
    usersig: String,
}

impl<'a> TencentApi<'a> {
    pub fn new(
        vendor: &'a Vendor,
        settings: &'a TencentCloud,
        key: &Secret,
        pacer: Arc<DefaultDirectRateLimiter>,
    ) -> Self {
        let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let usersig = user_sig(
            key,
            &UserSigInput {
                sdk_app_id: settings.sdk_app_id(),
                identifier: settings.admin_identifier(),
                time: now,
                expire: ADMIN_SIG_SECONDS,
            },
        );
        Self {
            vendor,
            settings,
            pacer,
            usersig,
        }
    }

    pub fn settings(&self) -> &TencentCloud {
        self.settings
    }

    /// One command (`service/command`), retried while retrying can help; answers the
    /// body of an `OK`.
    pub async fn call(&self, command: &str, body: &Value) -> Result<Value, VendorError> {
        let policy = self.vendor.policy;
        let url = format!("{}/v4/{command}", self.settings.server());
        let started = Instant::now();
        let mut backoff = policy.first_backoff;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.pacer.until_ready().await;
            let random = rand::rng().random::<u32>().to_string();
            let sdk_app_id = self.settings.sdk_app_id().to_string();
            let query = [
                ("sdkappid", sdk_app_id.as_str()),
                ("identifier", self.settings.admin_identifier()),
                ("usersig", self.usersig.as_str()),
                ("random", random.as_str()),
                ("contenttype", "json"),
            ];
            let request = self
                .vendor
                .http
                .post(&url)
                .query(&query)
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
            let (why, rate_limited) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(bytes) if status.is_success() => {
                            match serde_json::from_slice::<Value>(&bytes) {
                                Ok(answer) => match outcome(&answer) {
                                    Outcome::Ok => return Ok(answer),
                                    Outcome::Retry(why, limit) => (why, limit),
                                    Outcome::Refused(code, text) => {
                                        return Err(VendorError::Refused {
                                            status: 200,
                                            code: Some(code),
                                            message: format!("{command}: {text}"),
                                        })
                                    }
                                },
                                Err(_) => ("the answer is not JSON".to_owned(), false),
                            }
                        }
                        Ok(_) if status.is_server_error() || status.as_u16() == 429 => {
                            (format!("HTTP {}", status.as_u16()), status.as_u16() == 429)
                        }
                        Ok(_) => {
                            return Err(VendorError::Refused {
                                status: status.as_u16(),
                                code: None,
                                message: format!(
                                    "{command}: HTTP {}",
                                    status.canonical_reason().unwrap_or("")
                                ),
                            })
                        }
                        Err(e) => (format!("reading the answer: {}", describe(&e)), false),
                    }
                }
                Err(e) => (describe(&e), false),
            };
            let elapsed = started.elapsed();
            let wait = rand::rng().random_range(Duration::ZERO..=backoff);
            if elapsed + wait + policy.attempt_timeout / 4 > policy.budget {
                let what = format!(
                    "{command}: {why} (after {attempt} attempts in {} ms)",
                    elapsed.as_millis()
                );
                // Tencent's limits are per second: one that outlasts the whole budget is
                // the app's sustained overload, paused like LeanCloud's 429.
                return Err(if rate_limited {
                    VendorError::RateLimited {
                        what,
                        retry_after: policy.rate_limit_pause,
                    }
                } else {
                    VendorError::Unavailable(what)
                });
            }
            tracing::info!(call = command, attempt, wait_ms = wait.as_millis() as u64, why = %why, "Tencent Cloud IM call failed; retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }

    /// Imports accounts (they must exist before they own or join a group); answers the
    /// ones Tencent refused.
    pub async fn import_accounts(&self, ids: &[String]) -> Result<Vec<Refusal>, VendorError> {
        let mut refused = Vec::new();
        for chunk in ids.chunks(IMPORT_PER_CALL) {
            let list: Vec<Value> = chunk.iter().map(|id| json!({ "UserID": id })).collect();
            let answer = self
                .call(
                    "im_open_login_svc/multiaccount_import",
                    &json!({ "AccountList": list }),
                )
                .await?;
            for failed in answer["FailAccounts"].as_array().into_iter().flatten() {
                if let Some(id) = failed.as_str() {
                    refused.push(Refusal {
                        client_id: id.to_owned(),
                        why: "Tencent Cloud IM could not import the account".into(),
                    });
                }
            }
        }
        Ok(refused)
    }

    /// Adds members (accounts imported already); answers the ones Tencent did not add.
    pub async fn add_members(
        &self,
        group: &str,
        ids: &[String],
    ) -> Result<Vec<Refusal>, VendorError> {
        let mut refused = Vec::new();
        for chunk in ids.chunks(ADD_PER_CALL) {
            let list: Vec<Value> = chunk
                .iter()
                .map(|id| json!({ "Member_Account": id }))
                .collect();
            let answer = self
                .call(
                    "group_open_http_svc/add_group_member",
                    &json!({ "GroupId": group, "MemberList": list, "Silence": 1 }),
                )
                .await?;
            for m in answer["MemberList"].as_array().into_iter().flatten() {
                // 1 added, 2 already a member, 3 awaiting confirmation; 0 failed.
                if m["Result"].as_i64() == Some(0) {
                    refused.push(Refusal {
                        client_id: m["Member_Account"].as_str().unwrap_or_default().to_owned(),
                        why: "Tencent Cloud IM did not add the member".into(),
                    });
                }
            }
        }
        Ok(refused)
    }

    /// Removes members; removing one who is not a member succeeds.
    pub async fn remove_members(&self, group: &str, ids: &[String]) -> Result<(), VendorError> {
        for chunk in ids.chunks(DELETE_PER_CALL) {
            self.call(
                "group_open_http_svc/delete_group_member",
                &json!({ "GroupId": group, "MemberToDel_Account": chunk, "Silence": 1 }),
            )
            .await?;
        }
        Ok(())
    }

    /// Every member of the group with its role (`Owner`, `Admin`, `Member`); `None` when
    /// the group is gone.
    pub async fn members(&self, group: &str) -> Result<Option<Vec<(String, String)>>, VendorError> {
        let mut out = Vec::new();
        loop {
            let answer = self
                .call(
                    "group_open_http_svc/get_group_member_info",
                    &json!({ "GroupId": group, "Limit": MEMBER_PAGE, "Offset": out.len() }),
                )
                .await;
            let answer = match answer {
                Err(VendorError::Refused {
                    code: Some(code), ..
                }) if GROUP_GONE.contains(&code) => return Ok(None),
                other => other?,
            };
            let page: Vec<(String, String)> = answer["MemberList"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    Some((
                        m["Member_Account"].as_str()?.to_owned(),
                        m["Role"].as_str().unwrap_or("Member").to_owned(),
                    ))
                })
                .collect();
            let total = answer["MemberNum"].as_u64().unwrap_or(0) as usize;
            let last = page.len() < MEMBER_PAGE;
            out.extend(page);
            if last || out.len() >= total {
                return Ok(Some(out));
            }
        }
    }

    pub async fn set_role(
        &self,
        group: &str,
        member: &str,
        admin: bool,
    ) -> Result<(), VendorError> {
        let role = if admin { "Admin" } else { "Member" };
        self.call(
            "group_open_http_svc/modify_group_member_info",
            &json!({ "GroupId": group, "Member_Account": member, "Role": role }),
        )
        .await
        .map(drop)
    }

    pub async fn rename(&self, group: &str, name: &str) -> Result<(), VendorError> {
        self.call(
            "group_open_http_svc/modify_group_base_info",
            &json!({ "GroupId": group, "Name": name }),
        )
        .await
        .map(drop)
    }

    pub async fn change_owner(&self, group: &str, owner: &str) -> Result<(), VendorError> {
        self.call(
            "group_open_http_svc/change_group_owner",
            &json!({ "GroupId": group, "NewOwner_Account": owner }),
        )
        .await
        .map(drop)
    }

    /// Destroys the group; one that is gone already is not an error (a retried destroy
    /// whose first answer was lost).
    pub async fn destroy(&self, group: &str) -> Result<(), VendorError> {
        match self
            .call(
                "group_open_http_svc/destroy_group",
                &json!({ "GroupId": group }),
            )
            .await
        {
            Err(VendorError::Refused {
                code: Some(code), ..
            }) if GROUP_GONE.contains(&code) => Ok(()),
            other => other.map(drop),
        }
    }

    pub async fn notify(&self, group: &str, content: &str) -> Result<(), VendorError> {
        self.call(
            "group_open_http_svc/send_group_system_notification",
            &json!({ "GroupId": group, "Content": content }),
        )
        .await
        .map(drop)
    }
}

enum Outcome {
    Ok,
    /// Why, and whether it was a rate limit.
    Retry(String, bool),
    Refused(i64, String),
}

/// What an HTTP 200 answer says.
fn outcome(answer: &Value) -> Outcome {
    let code = answer["ErrorCode"].as_i64().unwrap_or(0);
    let text: String = answer["ErrorInfo"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    match answer["ActionStatus"].as_str() {
        Some("OK") if code == 0 => Outcome::Ok,
        _ if RETRIED_CODES.contains(&code) => Outcome::Retry(
            format!("code {code}: {text}"),
            RATE_LIMIT_CODES.contains(&code),
        ),
        Some("FAIL") | Some("OK") => Outcome::Refused(code, text),
        _ => Outcome::Retry("an answer without ActionStatus".into(), false),
    }
}

/// `name` cut to `max` UTF-8 bytes on a character boundary.
pub fn cut_name(name: &str, max: usize) -> &str {
    if name.len() <= max {
        return name;
    }
    let mut end = max;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_on_a_character_boundary() {
        assert_eq!(cut_name("short", 30), "short");
        let cjk = "群".repeat(11); // 33 bytes
        assert_eq!(cut_name(&cjk, 30), "群".repeat(10));
        let mixed = format!("a{}", "群".repeat(10)); // 31 bytes
        assert_eq!(cut_name(&mixed, 30), format!("a{}", "群".repeat(9)));
        assert_eq!(cut_name(&"x".repeat(31), 30).len(), 30);
    }

    #[test]
    fn rate_limits_and_internal_errors_are_retried_others_refused() {
        for (code, limit) in [
            (60007, true),
            (60011, true),
            (10006, true),
            (10023, true),
            (10002, false),
        ] {
            let a = json!({"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": "x"});
            assert!(
                matches!(outcome(&a), Outcome::Retry(_, l) if l == limit),
                "{code}"
            );
        }
        for code in [10004, 10007, 10010, 10019, 10021, 10025, 70001, 60010] {
            let a = json!({"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": "x"});
            assert!(
                matches!(outcome(&a), Outcome::Refused(c, _) if c == code),
                "{code}"
            );
        }
        let ok = json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""});
        assert!(matches!(outcome(&ok), Outcome::Ok));
        assert!(matches!(outcome(&json!({})), Outcome::Retry(_, false)));
    }
}

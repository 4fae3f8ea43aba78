//! The REST layer (notes, "Server REST API"): one call in, one answer out.
//!
//! `POST /v4/<service>/<command>?sdkappid=..&identifier=..&usersig=..&random=..&contenttype=json`
//! with a JSON object for a body; the answer is HTTP 200 with
//! `{"ActionStatus": "OK"|"FAIL", "ErrorCode", "ErrorInfo", ...}`. The checks, in order:
//!
//! 1. The method. A non-POST is refused with HTTP 405 (`Allow: POST`) and a `FAIL` body
//!    (60002), and does nothing. The notes say "POST only" and not what else happens; the
//!    safe reading is a refusal that no client can take for success, whichever of the
//!    status or the body it reads.
//! 2. The path: `/v4/` and one of the commands the stand-in serves, else `FAIL` 60002.
//! 3. The query: each of the five parameters exactly once, none other, `random` a u32,
//!    `contenttype=json`, else `FAIL` 60002. (60002, "HTTP parse error: check the URL",
//!    is from Tencent's public REST error table, not the notes; nothing should match it:
//!    it is a client's bug.)
//! 4. `sdkappid` must be this app's, else `FAIL` 70014. The stand-in serves one app, and
//!    70014 ("the UserSig's sdkappid differs from the request's") is the notes' code
//!    closest to "this call is for another app": the admin's UserSig, made for this app,
//!    names another sdkappid than the request. (Tencent itself would look the other app
//!    up and answer for it, or 60006 for none; either way a settings error to fix, not
//!    retry.)
//! 5. The UserSig, checked by `usersig.rs` (70001, 70003, 70009, 70013), then `identifier`
//!    one of the app's admins (60010).
//! 6. The rate limit of the command (`limiter.rs`): over it `FAIL` 60007, the REST layer's
//!    code, since the limiter stands in front of every command, accounts and groups alike.
//! 7. The body: a JSON object, else `FAIL` 60003 (an empty body too: the notes' "never
//!    empty (`{}`)").
//! 8. A group poisoned by the test (`fail_always_for_group`) fails with its code.
//! 9. The command (`accounts.rs`, `groups.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::body::Fail;
use super::{accounts, groups, usersig, App, Inner};

/// The commands served, as `<service>/<command>`.
pub(super) const COMMANDS: [&str; 12] = [
    "im_open_login_svc/account_import",
    "im_open_login_svc/multiaccount_import",
    "group_open_http_svc/create_group",
    "group_open_http_svc/add_group_member",
    "group_open_http_svc/delete_group_member",
    "group_open_http_svc/modify_group_base_info",
    "group_open_http_svc/change_group_owner",
    "group_open_http_svc/modify_group_member_info",
    "group_open_http_svc/destroy_group",
    "group_open_http_svc/get_group_info",
    "group_open_http_svc/get_group_member_info",
    "group_open_http_svc/send_group_system_notification",
];

const URL_ERROR: u32 = 60002;
const BAD_JSON: u32 = 60003;
const RATE_LIMITED: u32 = 60007;
const ADMIN_REQUIRED: u32 = 60010;

const QUERY: [&str; 5] = ["sdkappid", "identifier", "usersig", "random", "contenttype"];

/// What goes back: a status and either Tencent's JSON body or a gateway's text.
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Body,
    /// Whether the call changed anything.
    pub applied: bool,
}

pub(super) enum Body {
    Json(Value),
    /// Not JSON: what a gateway in front of Tencent answers with a 5xx.
    Text(&'static str),
}

impl Answer {
    pub fn ok(mut fields: Map<String, Value>, applied: bool) -> Self {
        fields.insert("ActionStatus".into(), json!("OK"));
        fields.insert("ErrorCode".into(), json!(0));
        fields.insert("ErrorInfo".into(), json!(""));
        Self {
            status: StatusCode::OK,
            body: Body::Json(Value::Object(fields)),
            applied,
        }
    }

    pub fn fail(fail: &Fail) -> Self {
        Self {
            status: StatusCode::OK,
            body: Body::Json(
                json!({"ActionStatus": "FAIL", "ErrorCode": fail.code, "ErrorInfo": fail.info}),
            ),
            applied: false,
        }
    }

    pub fn gateway(status: StatusCode) -> Self {
        Self {
            status,
            body: Body::Text(match status {
                StatusCode::BAD_GATEWAY => "502 Bad Gateway",
                _ => "500 Internal Server Error",
            }),
            applied: false,
        }
    }

    /// The body's `ErrorCode`, when it has one.
    pub fn error_code(&self) -> Option<u32> {
        match &self.body {
            Body::Json(json) => json
                .get("ErrorCode")
                .and_then(Value::as_u64)
                .map(|c| c as u32),
            Body::Text(_) => None,
        }
    }
}

pub(super) struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

/// The `<service>/<command>` of a path, if it is one the stand-in serves.
pub(super) fn command_of(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/v4/")?;
    COMMANDS.iter().copied().find(|c| *c == rest)
}

pub(super) fn handle(app: &App, inner: &mut Inner, request: &Request) -> Answer {
    if request.method != Method::POST {
        let mut answer = Answer::fail(&Fail::new(
            URL_ERROR,
            format!(
                "{} is not allowed: the REST API takes POST only",
                request.method
            ),
        ));
        answer.status = StatusCode::METHOD_NOT_ALLOWED;
        return answer;
    }
    match call(app, inner, request) {
        Ok(answer) => answer,
        Err(fail) => Answer::fail(&fail),
    }
}

fn call(app: &App, inner: &mut Inner, request: &Request) -> Result<Answer, Fail> {
    let command = command_of(request.path).ok_or_else(|| {
        Fail::new(
            URL_ERROR,
            "no such service or command (the stand-in serves /v4/<service>/<command> for the notes' commands)",
        )
    })?;
    authenticate(app, request.query)?;
    if !inner.limiter.admit(command) {
        return Err(Fail::new(
            RATE_LIMITED,
            format!("{command}: over the limit of calls a second"),
        ));
    }
    let fields = match serde_json::from_slice(request.body) {
        Ok(Value::Object(fields)) => fields,
        _ => return Err(Fail::new(BAD_JSON, "the body is not a JSON object")),
    };
    if let Some(group) = fields.get("GroupId").and_then(Value::as_str) {
        if let Some(code) = inner.faults.poisoned(group) {
            return Err(Fail::new(code, "injected by the stand-in for this group"));
        }
    }
    match command.split_once('/') {
        Some(("im_open_login_svc", name)) => accounts::handle(inner, name, &fields),
        Some((_, name)) => groups::handle(inner, name, &fields),
        None => unreachable!("every command has a service"),
    }
}

/// Steps 3 to 5 of the module's list.
fn authenticate(app: &App, query: Option<&str>) -> Result<(), Fail> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let mut values: [Option<&str>; 5] = [None; 5];
    for (name, value) in &pairs {
        let Some(i) = QUERY.iter().position(|q| q == name) else {
            return Err(Fail::new(
                URL_ERROR,
                format!("{name} is not a parameter of the REST API"),
            ));
        };
        if values[i].replace(value).is_some() {
            return Err(Fail::new(URL_ERROR, format!("{name} is given twice")));
        }
    }
    let param = |i: usize| {
        values[i]
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Fail::new(URL_ERROR, format!("{} is required", QUERY[i])))
    };
    let (sdk_app_id, identifier, user_sig, random, content_type) =
        (param(0)?, param(1)?, param(2)?, param(3)?, param(4)?);
    if random.parse::<u32>().is_err() {
        return Err(Fail::new(
            URL_ERROR,
            "random must be a 32-bit unsigned integer",
        ));
    }
    if content_type != "json" {
        return Err(Fail::new(URL_ERROR, "contenttype must be json"));
    }
    let sdk_app_id: u64 = sdk_app_id
        .parse()
        .map_err(|_| Fail::new(URL_ERROR, "sdkappid must be an integer"))?;
    if sdk_app_id != app.sdk_app_id {
        return Err(Fail::new(
            usersig::WRONG_SDK_APP_ID,
            "sdkappid is not this app's",
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    usersig::verify(user_sig, app.sdk_app_id, &app.key, identifier, now)
        .map_err(|e| Fail::new(e.code, e.info))?;
    if !app.admins.contains(identifier) {
        return Err(Fail::new(
            ADMIN_REQUIRED,
            "identifier is not an App admin: the REST API needs one",
        ));
    }
    Ok(())
}

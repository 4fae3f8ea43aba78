//! The vendor's contract: one request in, one answer out, as the realtime REST API 1.2
//! documents it (docs.leancloud.cn/sdk/im/guide/rest, "单聊、群聊"; error codes from
//! docs.leancloud.cn/sdk/other/error-code; request rules from the storage REST guide,
//! which that API refers to for headers, answers and `where`).
//!
//! Verified there: the paths and methods; `X-LC-Id` and `X-LC-Key: <master key>,master`;
//! JSON bodies with `Content-Type: application/json`; an error is a non-2xx status with
//! `{"code", "error"}`; 401 `Unauthorized.`, 429 `Too many requests.`, code 1
//! `Internal server error. No information available.` (also the code of parameter errors
//! the list names no other code for), 107 `Malformed json object. A json dictionary is
//! expected.`, 105 invalid key names, 121 `$` or `.` in a nested key, 4303
//! `CONVERSATION_NOT_FOUND` ("the conversation of a message send, an invite, ... does not
//! exist"); every field but `m` can be changed by PUT; the members bodies and answers;
//! `{"result": [...]}` for the member list; the message fields (`from_client` and
//! `message` required, the message a string of at most 5 KB, the REST send not checking
//! that `from_client` is a member); a client id is letters, digits, `_` and `-`, does not
//! start with a digit and has at most 64 characters (IM overview); `limit` defaults to 100
//! and is at most 1000 (storage guide).
//!
//! Where the documentation is silent the stand-in takes the strict reading, so that a
//! client that works against it works against the vendor: a create answers 201 (the
//! storage API's status for a create; a client must accept any 2xx); an unknown
//! conversation answers 404 with code 4303 on every path, DELETE included (a client must
//! treat "already gone" as done); unknown paths 404 and wrong methods 405, both code 1;
//! a missing or wrong `Content-Type` on a body 400 code 1; unknown fields in a members or
//! message body, or unknown query parameters, 400 code 1; a member list in `m` or
//! `client_ids` that is not client ids 400 code 1.

use std::collections::BTreeSet;

use hyper::{header, HeaderMap, Method, StatusCode};
use serde_json::{json, Map, Value};

use super::query::{Where, WhereError};
use super::Inner;

/// A message string's limit: "不超过 5 KB", read as 5 × 1024 bytes of UTF-8.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// A message may mention at most 20 client ids.
const MAX_MENTIONS: usize = 20;
const MAX_CLIENT_ID_CHARS: usize = 64;

pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// Whether the request changed anything.
    pub applied: bool,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            applied: false,
        }
    }

    fn changed(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            applied: true,
        }
    }

    pub fn error(status: StatusCode, code: u32, text: &str) -> Self {
        Self {
            status,
            body: json!({"code": code, "error": text}),
            applied: false,
        }
    }

    pub fn unauthorized() -> Self {
        Self::error(StatusCode::UNAUTHORIZED, 401, "Unauthorized.")
    }

    pub fn too_many_requests() -> Self {
        Self::error(StatusCode::TOO_MANY_REQUESTS, 429, "Too many requests.")
    }

    pub fn server_error() -> Self {
        Self::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            1,
            "Internal server error. No information available.",
        )
    }

    fn bad_request(text: &str) -> Self {
        Self::error(StatusCode::BAD_REQUEST, 1, text)
    }

    fn malformed_json() -> Self {
        Self::error(
            StatusCode::BAD_REQUEST,
            107,
            "Malformed json object. A json dictionary is expected.",
        )
    }

    fn conversation_not_found() -> Self {
        Self::error(StatusCode::NOT_FOUND, 4303, "CONVERSATION_NOT_FOUND")
    }

    /// The vendor's answer for a status a test poisons something with.
    pub fn canned(status: u16) -> Self {
        match status {
            401 => Self::unauthorized(),
            404 => Self::conversation_not_found(),
            429 => Self::too_many_requests(),
            500 => Self::server_error(),
            503 => Self::error(
                StatusCode::SERVICE_UNAVAILABLE,
                503,
                "The app is temporarily disabled/readonly.",
            ),
            other => Self::error(
                StatusCode::from_u16(other).expect("an HTTP status"),
                1,
                "Injected by the stand-in.",
            ),
        }
    }
}

pub(super) struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The one app the stand-in serves.
pub(super) struct App {
    pub id: String,
    pub master_key: String,
}

pub(super) fn handle(app: &App, inner: &mut Inner, request: &Request) -> Answer {
    match route(app, inner, request) {
        Ok(answer) | Err(answer) => answer,
    }
}

enum Route<'a> {
    /// The storage API's scan of the class (`/1.1/scan/classes/_Conversation`), which
    /// `im-admin import leancloud --scan` reads.
    Scan,
    Conversations,
    Conversation(&'a str),
    Members(&'a str),
    Messages(&'a str),
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Option<Self> {
        if path == "/1.1/scan/classes/_Conversation" {
            return Some(Self::Scan);
        }
        let rest = path.strip_prefix("/1.2/rtm/conversations")?;
        if rest.is_empty() {
            return Some(Self::Conversations);
        }
        let mut parts = rest.strip_prefix('/')?.split('/');
        let id = parts.next().filter(|id| !id.is_empty())?;
        let route = match parts.next() {
            None => Self::Conversation(id),
            Some("members") => Self::Members(id),
            Some("messages") => Self::Messages(id),
            Some(_) => return None,
        };
        parts.next().is_none().then_some(route)
    }

    fn methods(&self) -> &'static [Method] {
        match self {
            Self::Scan => &[Method::GET],
            Self::Conversations => &[Method::GET, Method::POST],
            Self::Conversation(_) => &[Method::PUT, Method::DELETE],
            Self::Members(_) => &[Method::GET, Method::POST, Method::DELETE],
            Self::Messages(_) => &[Method::GET, Method::POST],
        }
    }
}

fn route(app: &App, inner: &mut Inner, request: &Request) -> Result<Answer, Answer> {
    authenticate(app, request.headers)?;
    let route = Route::parse(request.path).ok_or_else(|| {
        Answer::error(
            StatusCode::NOT_FOUND,
            1,
            &format!("The stand-in has no route {}.", request.path),
        )
    })?;
    if !route.methods().contains(request.method) {
        return Err(Answer::error(
            StatusCode::METHOD_NOT_ALLOWED,
            1,
            &format!("{} is not allowed on {}.", request.method, request.path),
        ));
    }
    let method = request.method;
    match route {
        Route::Scan => scan(inner, request),
        Route::Conversations if method == Method::POST => create(inner, request),
        Route::Conversations => query(inner, request),
        Route::Conversation(id) if method == Method::PUT => update(inner, id, request),
        Route::Conversation(id) => delete(inner, id),
        Route::Members(id) if method == Method::GET => members(inner, id),
        Route::Members(id) => change_members(inner, id, method == Method::POST, request),
        Route::Messages(id) if method == Method::POST => send(inner, id, request),
        Route::Messages(id) => history(inner, id, request),
    }
}

/// Exactly one `X-LC-Id` with the app id and one `X-LC-Key` with the master key and the
/// `,master` suffix. The vendor's other forms (the app key, `X-LC-Sign`) cannot do what the
/// mirroring does under the default ACL of `_Conversation`, so the stand-in refuses them.
fn authenticate(app: &App, headers: &HeaderMap) -> Result<(), Answer> {
    let only = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok(),
            _ => None,
        }
    };
    let key = format!("{},master", app.master_key);
    if only("x-lc-id") == Some(app.id.as_str()) && only("x-lc-key") == Some(key.as_str()) {
        Ok(())
    } else {
        Err(Answer::unauthorized())
    }
}

fn create(inner: &mut Inner, request: &Request) -> Result<Answer, Answer> {
    let mut fields = json_body(request)?;
    check_fields(&fields)?;
    let members = match fields.remove("m") {
        None => BTreeSet::new(),
        Some(m) => client_ids("m", &m, inner.any_client_ids)?,
    };
    let unique = match fields.get("unique") {
        None => false,
        Some(Value::Bool(unique)) => *unique,
        Some(_) => return Err(Answer::bad_request("unique must be true or false.")),
    };
    let group = fields
        .get("attr")
        .and_then(|attr| attr.get("group_id"))
        .and_then(Value::as_u64);
    poisoned(inner, None, group)?;
    if unique {
        if let Some(existing) = inner.store.find_unique(&members) {
            return Ok(Answer::ok(existing));
        }
    }
    let answer = inner.store.create(fields, members);
    Ok(Answer::changed(StatusCode::CREATED, answer))
}

fn query(inner: &mut Inner, request: &Request) -> Result<Answer, Answer> {
    let mut filter = Where::default();
    let mut skip = 0;
    let mut limit = DEFAULT_LIMIT;
    for (name, value) in params(request.query, &["where", "skip", "limit"])? {
        match name.as_str() {
            "where" => {
                filter = Where::parse(&value).map_err(|error| match error {
                    WhereError::Malformed(text) => {
                        Answer::error(StatusCode::BAD_REQUEST, 107, &text)
                    }
                    WhereError::Unsupported(text) => Answer::bad_request(&text),
                })?
            }
            "skip" => skip = number(&name, &value, usize::MAX)?,
            _ => limit = number(&name, &value, MAX_LIMIT)?,
        }
    }
    let conversation = filter.equality("objectId").and_then(Value::as_str);
    let group = filter.equality("attr.group_id").and_then(Value::as_u64);
    poisoned(inner, conversation, group)?;
    Ok(Answer::ok(
        json!({"results": inner.store.query(&filter, skip, limit)}),
    ))
}

/// The scan: `limit` (at most 1000, 100 by default) records in creation order after
/// `cursor`, and `cursor` for the next page, `null` after the last. The vendor's cursor is
/// opaque (and lives 10 minutes); this one is an offset in a form of its own, so that a
/// client that makes one up is refused.
fn scan(inner: &mut Inner, request: &Request) -> Result<Answer, Answer> {
    let mut skip = 0;
    let mut limit = DEFAULT_LIMIT;
    for (name, value) in params(request.query, &["limit", "cursor"])? {
        match name.as_str() {
            "limit" => limit = number(&name, &value, MAX_LIMIT)?,
            _ => {
                skip = value
                    .strip_prefix("scan-")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| Answer::bad_request("Invalid cursor."))?
            }
        }
    }
    let mut page = inner.store.query(&Where::default(), skip, limit + 1);
    let more = page.len() > limit;
    page.truncate(limit);
    let cursor = more.then(|| format!("scan-{}", skip + limit));
    Ok(Answer::ok(json!({"results": page, "cursor": cursor})))
}

fn update(inner: &mut Inner, id: &str, request: &Request) -> Result<Answer, Answer> {
    let fields = json_body(request)?;
    if fields.contains_key("m") {
        return Err(Answer::bad_request(
            "m cannot be changed by an update: use /members.",
        ));
    }
    check_fields(&fields)?;
    if fields.get("unique").is_some_and(|u| !u.is_boolean()) {
        return Err(Answer::bad_request("unique must be true or false."));
    }
    poisoned(inner, Some(id), inner.store.group_of(id))?;
    let updated_at = inner
        .store
        .update(id, fields)
        .ok_or_else(Answer::conversation_not_found)?;
    Ok(Answer::changed(
        StatusCode::OK,
        json!({"updatedAt": updated_at, "objectId": id}),
    ))
}

fn delete(inner: &mut Inner, id: &str) -> Result<Answer, Answer> {
    poisoned(inner, Some(id), inner.store.group_of(id))?;
    if !inner.store.delete(id) {
        return Err(Answer::conversation_not_found());
    }
    Ok(Answer::changed(StatusCode::OK, json!({})))
}

fn members(inner: &mut Inner, id: &str) -> Result<Answer, Answer> {
    poisoned(inner, Some(id), inner.store.group_of(id))?;
    let members = inner
        .store
        .members(id)
        .ok_or_else(Answer::conversation_not_found)?;
    Ok(Answer::ok(json!({"result": members})))
}

/// Adding a member already there, or removing one not there, is no error: the members are
/// a set, and the vendor's endpoints do what the storage API's AddUnique and Remove do.
fn change_members(
    inner: &mut Inner,
    id: &str,
    add: bool,
    request: &Request,
) -> Result<Answer, Answer> {
    let body = json_body(request)?;
    only_fields(&body, &["client_ids"])?;
    let clients = body
        .get("client_ids")
        .ok_or_else(|| Answer::bad_request("client_ids is required."))?;
    let clients = client_ids("client_ids", clients, inner.any_client_ids)?;
    if clients.is_empty() {
        return Err(Answer::bad_request("client_ids must not be empty."));
    }
    poisoned(inner, Some(id), inner.store.group_of(id))?;
    let updated_at = inner
        .store
        .change_members(id, &clients, add)
        .ok_or_else(Answer::conversation_not_found)?;
    Ok(Answer::changed(
        StatusCode::OK,
        json!({"updatedAt": updated_at, "objectId": id}),
    ))
}

fn send(inner: &mut Inner, id: &str, request: &Request) -> Result<Answer, Answer> {
    if inner.quota.as_mut().is_some_and(|q| !q.admit()) {
        return Err(Answer::too_many_requests());
    }
    let mut body = json_body(request)?;
    only_fields(
        &body,
        &[
            "from_client",
            "message",
            "transient",
            "no_sync",
            "push_data",
            "priority",
            "mention_all",
            "mention_client_ids",
        ],
    )?;
    let from_client = match body.remove("from_client") {
        Some(Value::String(from)) => {
            check_client_id("from_client", &from, inner.any_client_ids)?;
            from
        }
        Some(_) => return Err(Answer::bad_request("from_client must be a string.")),
        None => return Err(Answer::bad_request("from_client is required.")),
    };
    let message = match body.remove("message") {
        Some(Value::String(message)) if message.len() <= MAX_MESSAGE_BYTES => message,
        Some(Value::String(_)) => {
            return Err(Answer::bad_request("message is larger than 5 KB."));
        }
        Some(_) => return Err(Answer::bad_request("message must be a string.")),
        None => return Err(Answer::bad_request("message is required.")),
    };
    check_send_options(&body, inner.any_client_ids)?;
    poisoned(inner, Some(id), inner.store.group_of(id))?;
    if !inner.store.exists(id) {
        return Err(Answer::conversation_not_found());
    }
    let (msg_id, timestamp) = inner.store.add_message(id, from_client, message, body);
    Ok(Answer::changed(
        StatusCode::OK,
        json!({"msg-id": msg_id, "timestamp": timestamp}),
    ))
}

fn check_send_options(options: &Map<String, Value>, any_client_ids: bool) -> Result<(), Answer> {
    for flag in ["transient", "no_sync", "mention_all"] {
        if options.get(flag).is_some_and(|v| !v.is_boolean()) {
            return Err(Answer::bad_request(&format!(
                "{flag} must be true or false."
            )));
        }
    }
    if options
        .get("push_data")
        .is_some_and(|v| !v.is_string() && !v.is_object())
    {
        return Err(Answer::bad_request(
            "push_data must be a string or an object.",
        ));
    }
    if let Some(priority) = options.get("priority") {
        let known = priority
            .as_str()
            .is_some_and(|p| ["high", "normal", "low"].contains(&p.to_ascii_lowercase().as_str()));
        if !known {
            return Err(Answer::bad_request("priority is high, normal or low."));
        }
    }
    if let Some(mentions) = options.get("mention_client_ids") {
        if client_ids("mention_client_ids", mentions, any_client_ids)?.len() > MAX_MENTIONS {
            return Err(Answer::bad_request(
                "mention_client_ids may name at most 20 client ids.",
            ));
        }
    }
    Ok(())
}

/// The history as `GET .../messages` answers it, newest first unless `reversed`. The
/// stand-in keeps no other filters (`msgid`, `timestamp`, ...) and refuses them.
fn history(inner: &mut Inner, id: &str, request: &Request) -> Result<Answer, Answer> {
    let mut limit = DEFAULT_LIMIT;
    let mut reversed = false;
    for (name, value) in params(request.query, &["limit", "reversed"])? {
        match name.as_str() {
            "limit" => limit = number(&name, &value, MAX_LIMIT)?,
            _ => {
                reversed = value
                    .parse()
                    .map_err(|_| Answer::bad_request("reversed must be true or false."))?
            }
        }
    }
    poisoned(inner, Some(id), inner.store.group_of(id))?;
    if !inner.store.exists(id) {
        return Err(Answer::conversation_not_found());
    }
    let mut messages = inner.store.messages(id);
    messages.retain(|m| m.options.get("transient") != Some(&Value::Bool(true)));
    if !reversed {
        messages.reverse();
    }
    let answer: Vec<Value> = messages
        .into_iter()
        .take(limit)
        .map(|m| {
            json!({
                "timestamp": m.timestamp, "conv-id": id, "data": m.raw, "from": m.from_client,
                "msg-id": m.msg_id, "is-conv": true, "is-room": false, "to": id, "bin": false,
                "from-ip": "127.0.0.1",
            })
        })
        .collect();
    Ok(Answer::ok(Value::Array(answer)))
}

/// A request's body: a JSON object, sent as `application/json`.
fn json_body(request: &Request) -> Result<Map<String, Value>, Answer> {
    let json = request
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Answer::bad_request(
            "Content-Type must be application/json.",
        ));
    }
    match serde_json::from_slice(request.body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(Answer::malformed_json()),
    }
}

/// The field rules of a create or update: the storage API's key names, none of the fields
/// the vendor sets itself, `name` a string, `attr` an object, and no nested key with `$`
/// or `.`. Storage operators (`{"__op": ...}`) and typed values (`{"__type": ...}`) are the
/// storage API's, not this one's documented bodies; the stand-in refuses them.
fn check_fields(fields: &Map<String, Value>) -> Result<(), Answer> {
    for (key, value) in fields {
        let mut chars = key.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Answer::error(
                StatusCode::BAD_REQUEST,
                105,
                &format!("Invalid key name. Keys are case-sensitive and 'a-zA-Z0-9_' are the only valid characters. The column is: '{key}'."),
            ));
        }
        if ["objectId", "createdAt", "updatedAt", "uniqueId"].contains(&key.as_str()) {
            return Err(Answer::bad_request(&format!(
                "{key} is set by the IM cloud."
            )));
        }
        check_nested(value)?;
    }
    if fields.get("name").is_some_and(|n| !n.is_string()) {
        return Err(Answer::bad_request("name must be a string."));
    }
    if fields.get("attr").is_some_and(|a| !a.is_object()) {
        return Err(Answer::bad_request("attr must be an object."));
    }
    Ok(())
}

fn check_nested(value: &Value) -> Result<(), Answer> {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                if key == "__op" || key == "__type" {
                    return Err(Answer::bad_request(&format!(
                        "the stand-in does not implement storage {key} values."
                    )));
                }
                if key.contains(['$', '.']) {
                    return Err(Answer::error(
                        StatusCode::BAD_REQUEST,
                        121,
                        "Keys in NSDictionary values may not include '$' or '.'.",
                    ));
                }
                check_nested(value)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_nested),
        _ => Ok(()),
    }
}

fn only_fields(body: &Map<String, Value>, known: &[&str]) -> Result<(), Answer> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(Answer::bad_request(&format!(
            "{unknown} is not a field of this request."
        ))),
        None => Ok(()),
    }
}

/// A list of client ids, as a set (a repeated id counts once).
fn client_ids(field: &str, value: &Value, any: bool) -> Result<BTreeSet<String>, Answer> {
    let Value::Array(items) = value else {
        return Err(Answer::bad_request(&format!(
            "{field} must be an array of client ids."
        )));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(id) => check_client_id(field, id, any).map(|()| id.clone()),
            _ => Err(Answer::bad_request(&format!(
                "{field} must be an array of client ids."
            ))),
        })
        .collect()
}

/// The vendor's client id: letters, digits, `_` and `-`, not starting with a digit, at
/// most 64 characters. A test may relax this to "any non-empty string" (see
/// `ImCloudStandIn::accept_any_client_ids`).
fn check_client_id(field: &str, id: &str, any: bool) -> Result<(), Answer> {
    let valid = if any {
        !id.is_empty()
    } else {
        id.chars().count() <= MAX_CLIENT_ID_CHARS
            && id.chars().next().is_some_and(|c| !c.is_ascii_digit())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if valid {
        Ok(())
    } else {
        Err(Answer::bad_request(&format!(
            "{field}: {id:?} is not a client id (letters, digits, '_' and '-', not starting with a digit, at most 64 characters)."
        )))
    }
}

/// The query parameters, each known and given once.
fn params(query: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, Answer> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !known.contains(&name.as_str()) {
            return Err(Answer::bad_request(&format!(
                "{name} is not a parameter of this request."
            )));
        }
        if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
            return Err(Answer::bad_request(&format!("{name} is given twice.")));
        }
    }
    Ok(pairs)
}

fn number(name: &str, value: &str, max: usize) -> Result<usize, Answer> {
    value
        .parse()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| Answer::bad_request(&format!("{name} must be a whole number up to {max}.")))
}

/// A poisoned conversation or group answers its canned failure, before anything changes.
fn poisoned(inner: &Inner, conversation: Option<&str>, group: Option<u64>) -> Result<(), Answer> {
    match inner.faults.poisoned(conversation, group) {
        Some(status) => Err(Answer::canned(status)),
        None => Ok(()),
    }
}

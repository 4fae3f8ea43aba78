//! `im_open_login_svc`: accounts, which must exist before they own or join a group
//! (notes, "Accounts must exist"). The app's admins exist from the start.
//!
//! A bad parameter here is 70402, the code Tencent's `account_import` page gives for an
//! invalid field (not in the notes; nothing should match it). `Nick` and `FaceUrl`, which
//! Tencent also takes on `account_import`, are accepted and not kept: no test reads them.

use serde_json::{json, Map, Value};

use super::body::{is_user_id, Body, Fail};
use super::rest::Answer;
use super::Inner;

const BAD_PARAMETER: u32 = 70402;
/// `multiaccount_import`'s batch limit.
const MAX_ACCOUNTS: usize = 100;

pub(super) fn handle(
    inner: &mut Inner,
    command: &str,
    fields: &Map<String, Value>,
) -> Result<Answer, Fail> {
    match command {
        "account_import" => import_one(inner, fields),
        "multiaccount_import" => import_many(inner, fields),
        other => unreachable!("{other} is not an account command"),
    }
}

/// Idempotent: importing an account that exists is OK.
fn import_one(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = Body::new(fields, BAD_PARAMETER, &["UserID", "Nick", "FaceUrl"])?;
    let id = body.required_string("UserID")?;
    body.string("Nick")?;
    body.string("FaceUrl")?;
    if !is_user_id(id) {
        return Err(body.bad("UserID must be printable ASCII, 1 to 32 bytes"));
    }
    let new = inner.store.accounts.insert(id.to_string());
    Ok(Answer::ok(Map::new(), new))
}

/// Takes what it can; `FailAccounts` names the ids Tencent cannot take (not printable
/// ASCII, or over 32 bytes), and the call is still OK.
fn import_many(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = Body::new(fields, BAD_PARAMETER, &["AccountList"])?;
    let list = body.required_array("AccountList", MAX_ACCOUNTS, BAD_PARAMETER)?;
    let mut ids = Vec::with_capacity(list.len());
    for item in list {
        let id = item
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("UserID"))
            .and_then(Value::as_str)
            .ok_or_else(|| body.bad("AccountList must be objects {\"UserID\": string}"))?;
        ids.push(id);
    }
    let mut failed = Vec::new();
    let mut applied = false;
    for id in ids {
        if is_user_id(id) {
            applied |= inner.store.accounts.insert(id.to_string());
        } else if !failed.contains(&id) {
            failed.push(id);
        }
    }
    let mut answer = Map::new();
    answer.insert("FailAccounts".into(), json!(failed));
    Ok(Answer::ok(answer, applied))
}

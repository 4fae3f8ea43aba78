//! The `where` of a conversation query. The vendor takes its storage API's query language
//! (a JSON object of conditions on fields, dotted keys reaching into objects); the
//! stand-in understands the part the mirroring needs and refuses the rest with a 400,
//! so that a query it cannot answer faithfully fails loudly instead of matching wrongly.

use serde_json::{Map, Value};

enum Condition {
    Equals(Value),
    NotEqual(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Exists(bool),
}

/// Why a `where` is refused (the text of a 400).
pub(super) enum WhereError {
    /// Not a JSON object.
    Malformed(String),
    /// A condition the vendor may understand but the stand-in cannot evaluate.
    Unsupported(String),
}

/// Every condition must hold (the storage API's implicit "and").
#[derive(Default)]
pub(super) struct Where(Vec<(String, Condition)>);

impl Where {
    /// Parses the `where` parameter.
    pub fn parse(raw: &str) -> Result<Self, WhereError> {
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(raw) else {
            return Err(WhereError::Malformed(format!(
                "where must be a JSON object, not {raw:?}"
            )));
        };
        let mut conditions = Vec::new();
        for (key, value) in object {
            if key.starts_with('$') {
                return Err(WhereError::Unsupported(format!(
                    "the stand-in does not support {key} in where"
                )));
            }
            let condition = condition(&key, value).map_err(WhereError::Unsupported)?;
            conditions.push((key, condition));
        }
        Ok(Self(conditions))
    }

    /// The value `key` must equal, if the query says so (for finding what it concerns).
    pub fn equality(&self, key: &str) -> Option<&Value> {
        self.0.iter().find_map(|(k, c)| match c {
            Condition::Equals(v) if k == key => Some(v),
            _ => None,
        })
    }

    pub fn matches(&self, conversation: &Value) -> bool {
        self.0.iter().all(|(key, condition)| {
            let found = lookup(conversation, key);
            match condition {
                Condition::Equals(v) => found.is_some_and(|f| matches_value(f, v)),
                Condition::NotEqual(v) => !found.is_some_and(|f| matches_value(f, v)),
                Condition::In(vs) => found.is_some_and(|f| vs.iter().any(|v| matches_value(f, v))),
                Condition::NotIn(vs) => {
                    !found.is_some_and(|f| vs.iter().any(|v| matches_value(f, v)))
                }
                Condition::Exists(e) => found.is_some() == *e,
            }
        })
    }
}

fn condition(key: &str, value: Value) -> Result<Condition, String> {
    let Value::Object(object) = value else {
        return Ok(Condition::Equals(value));
    };
    if !object.keys().any(|k| k.starts_with('$')) {
        return Ok(Condition::Equals(Value::Object(object)));
    }
    let [(operator, operand)] =
        <[(String, Value); 1]>::try_from(object.into_iter().collect::<Vec<_>>())
            .map_err(|_| format!("the stand-in supports one operator per key in where ({key})"))?;
    let list = |operand: Value| match operand {
        Value::Array(values) => Ok(values),
        _ => Err(format!("{operator} on {key} needs an array")),
    };
    Ok(match operator.as_str() {
        "$ne" => Condition::NotEqual(operand),
        "$in" => Condition::In(list(operand)?),
        "$nin" => Condition::NotIn(list(operand)?),
        "$exists" => match operand {
            Value::Bool(b) => Condition::Exists(b),
            _ => return Err(format!("$exists on {key} needs true or false")),
        },
        other => {
            return Err(format!(
                "the stand-in does not support {other} in where ({key})"
            ))
        }
    })
}

/// The field at a dotted key (`attr.group_id`).
fn lookup<'a>(conversation: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(conversation, |value, part| {
        value
            .as_object()
            .and_then(|o: &Map<String, Value>| o.get(part))
    })
}

/// Equality as the storage API has it: numbers by value (`7` is `7.0`), and a scalar
/// matches an array that contains it (`{"m": "alice"}` finds alice's conversations).
fn matches_value(found: &Value, wanted: &Value) -> bool {
    match (found, wanted) {
        (Value::Array(items), w) if !w.is_array() => items.iter().any(|i| same(i, w)),
        (f, w) => same(f, w),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

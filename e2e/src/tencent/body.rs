//! A command's JSON body, read field by field: each refusal a `FAIL` with the command
//! layer's "bad parameter" code (10004 for groups, 70402 for accounts) and a text that
//! names the field.
//!
//! Fields the stand-in does not know are refused rather than ignored: a misspelt or
//! misplaced field (`MaxMemberCount` in `modify_group_base_info`, whose field is
//! `MaxMemberNum`) would otherwise be a change that silently does not happen.

use serde_json::{Map, Value};

/// A `FAIL` answer: the code and the `ErrorInfo` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fail {
    pub code: u32,
    pub info: String,
}

impl Fail {
    pub fn new(code: u32, info: impl Into<String>) -> Self {
        Self {
            code,
            info: info.into(),
        }
    }
}

pub(super) struct Body<'a> {
    fields: &'a Map<String, Value>,
    /// The code of a bad parameter in this command's layer.
    bad: u32,
}

impl<'a> Body<'a> {
    pub fn new(fields: &'a Map<String, Value>, bad: u32, known: &[&str]) -> Result<Self, Fail> {
        if let Some(unknown) = fields.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Fail::new(
                bad,
                format!("{unknown} is not a field of this command (the stand-in refuses unknown fields)"),
            ));
        }
        Ok(Self { fields, bad })
    }

    pub fn bad(&self, info: impl Into<String>) -> Fail {
        Fail::new(self.bad, info)
    }

    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.fields.get(name)
    }

    pub fn string(&self, name: &str) -> Result<Option<&'a str>, Fail> {
        match self.fields.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.bad(format!("{name} must be a string"))),
        }
    }

    pub fn required_string(&self, name: &str) -> Result<&'a str, Fail> {
        self.string(name)?
            .ok_or_else(|| self.bad(format!("{name} is required")))
    }

    /// A string of at most `max` UTF-8 bytes (Tencent counts bytes: a CJK character is 3).
    pub fn bounded_string(&self, name: &str, max: usize) -> Result<Option<&'a str>, Fail> {
        match self.string(name)? {
            Some(s) if s.len() > max => Err(self.bad(format!(
                "{name} is {} bytes, over {max} bytes of UTF-8",
                s.len()
            ))),
            other => Ok(other),
        }
    }

    pub fn integer(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, Fail> {
        match self.fields.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .filter(|n| (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| self.bad(format!("{name} must be an integer from {min} to {max}"))),
        }
    }

    /// An array of at most `max` items; `too_many` is the code of more than `max`.
    pub fn array(
        &self,
        name: &str,
        max: usize,
        too_many: u32,
    ) -> Result<Option<&'a [Value]>, Fail> {
        match self.fields.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) if items.len() > max => Err(Fail::new(
                too_many,
                format!("{name} has {} items, over {max}", items.len()),
            )),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(self.bad(format!("{name} must be an array"))),
        }
    }

    /// Present, with 1 to `max` items.
    pub fn required_array(
        &self,
        name: &str,
        max: usize,
        too_many: u32,
    ) -> Result<&'a [Value], Fail> {
        match self.array(name, max, too_many)? {
            None => Err(self.bad(format!("{name} is required"))),
            Some([]) => Err(self.bad(format!("{name} must not be empty"))),
            Some(items) => Ok(items),
        }
    }

    /// An array of strings.
    pub fn strings(
        &self,
        name: &str,
        max: usize,
        too_many: u32,
    ) -> Result<Option<Vec<&'a str>>, Fail> {
        let Some(items) = self.array(name, max, too_many)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| self.bad(format!("{name} must be an array of strings")))
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }
}

/// A user id Tencent can take (notes, "User ids"): printable ASCII, 1 to 32 bytes.
pub(super) fn is_user_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

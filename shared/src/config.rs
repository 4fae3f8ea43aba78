//! Settings, read once from the environment when a function (or the local server) starts.

use std::env;
use std::time::Duration;

use thiserror::Error;

pub use crate::model::policy::UnlinkedConversations;
pub use crate::model::signing::{HistoryFormat, TimestampUnit};

/// DynamoDB allows 100 actions in one transaction. Creating a group writes the group
/// item, the owner's membership, the idempotency record and the conversation link
/// besides the members; adding also checks the group and the caller. So at most 96
/// members fit in one atomic request, whichever request it is.
pub const TRANSACTION_MEMBER_CAP: usize = 96;

/// How callers prove who they are. There is deliberately no unauthenticated mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// HS256 JWTs from the app's backend, verified here with secrets kept in the table.
    Tokens,
    /// JWTs already verified by API Gateway's JWT authorizer; the claims arrive in the
    /// request context. One deployment serves one app in this mode.
    Authorizer {
        app_id: String,
        client_claim: String,
        /// A claim and the value (or one of the values) that marks an app admin.
        admin: Option<(String, String)>,
    },
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// The vendor limits a client id to 64 characters; app and conversation ids share it
    /// (docs/protocol.md).
    pub max_id_chars: usize,
    pub max_name_chars: usize,
    /// Members in one signature request.
    pub max_signature_members: usize,
    /// Members added or removed (or created with a group) in one request.
    pub max_group_members_per_request: usize,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_id_chars: 64,
            max_name_chars: 128,
            max_signature_members: 100,
            max_group_members_per_request: TRANSACTION_MEMBER_CAP,
            max_body_bytes: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    pub limits: Limits,
    pub timestamp_unit: TimestampUnit,
    pub history_format: HistoryFormat,
    pub unlinked_conversations: UnlinkedConversations,
    /// How long a warm function trusts a master key or token secret it has read (and an
    /// id it found missing).
    pub app_cache_ttl: Duration,
    /// How long a warm function trusts which group a conversation is (`IM_LINK_CACHE_SECONDS`).
    pub link_cache_ttl: Duration,
    pub auth: AuthMode,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub token_leeway_secs: u64,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0} must be set")]
    Missing(&'static str),
    #[error("{name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let table_name = lookup("TABLE_NAME")
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing("TABLE_NAME"))?;
        let defaults = Limits::default();
        let number =
            |name: &'static str, default: usize, max: usize| -> Result<usize, ConfigError> {
                match lookup(name) {
                    None => Ok(default),
                    Some(raw) => match raw.trim().parse::<usize>() {
                        Ok(n) if (1..=max).contains(&n) => Ok(n),
                        _ => Err(ConfigError::Invalid {
                            name,
                            why: format!("expected a whole number from 1 to {max}"),
                        }),
                    },
                }
            };
        let limits = Limits {
            max_id_chars: number("IM_MAX_ID_CHARS", defaults.max_id_chars, 1024)?,
            max_name_chars: number("IM_MAX_NAME_CHARS", defaults.max_name_chars, 1024)?,
            max_signature_members: number(
                "IM_MAX_SIGNATURE_MEMBERS",
                defaults.max_signature_members,
                10_000,
            )?,
            max_group_members_per_request: number(
                "IM_MAX_GROUP_MEMBERS_PER_REQUEST",
                defaults.max_group_members_per_request,
                TRANSACTION_MEMBER_CAP,
            )?,
            max_body_bytes: number("IM_MAX_BODY_BYTES", defaults.max_body_bytes, 1024 * 1024)?,
        };
        let timestamp_unit = choice(
            &lookup,
            "IM_TIMESTAMP_UNIT",
            &[
                (&["seconds", "s"], TimestampUnit::Seconds),
                (&["milliseconds", "ms"], TimestampUnit::Milliseconds),
            ],
        )?;
        let history_format = choice(
            &lookup,
            "IM_HISTORY_SIGNATURE_FORMAT",
            &[
                (&["docs"], HistoryFormat::Docs),
                (&["demo"], HistoryFormat::Demo),
            ],
        )?;
        let unlinked_conversations = choice(
            &lookup,
            "IM_UNLINKED_CONVERSATIONS",
            &[
                (&["allow"], UnlinkedConversations::Allow),
                (&["deny"], UnlinkedConversations::Deny),
            ],
        )?;
        let app_cache_ttl = Duration::from_secs(number("IM_APP_CACHE_SECONDS", 60, 3600)? as u64);
        let link_cache_ttl = Duration::from_secs(number("IM_LINK_CACHE_SECONDS", 10, 300)? as u64);
        let text = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let auth =
            match text("IM_AUTH_MODE").as_deref() {
                None | Some("tokens") => AuthMode::Tokens,
                Some("authorizer") => AuthMode::Authorizer {
                    app_id: text("IM_AUTH_APP_ID").ok_or(ConfigError::Missing("IM_AUTH_APP_ID"))?,
                    client_claim: text("IM_AUTH_CLIENT_CLAIM").unwrap_or_else(|| "sub".to_owned()),
                    admin: match (text("IM_AUTH_ADMIN_CLAIM"), text("IM_AUTH_ADMIN_VALUE")) {
                        (Some(claim), Some(value)) => Some((claim, value)),
                        (None, None) => None,
                        _ => return Err(ConfigError::Invalid {
                            name: "IM_AUTH_ADMIN_CLAIM",
                            why: "set both IM_AUTH_ADMIN_CLAIM and IM_AUTH_ADMIN_VALUE, or neither"
                                .into(),
                        }),
                    },
                },
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        name: "IM_AUTH_MODE",
                        why: format!("{other:?} is neither tokens nor authorizer"),
                    })
                }
            };
        let token_leeway_secs = match lookup("IM_TOKEN_LEEWAY_SECONDS") {
            None => 30,
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(n) if n <= 60 => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "IM_TOKEN_LEEWAY_SECONDS",
                        why: "expected a whole number from 0 to 60".into(),
                    })
                }
            },
        };
        Ok(Self {
            table_name,
            limits,
            timestamp_unit,
            history_format,
            unlinked_conversations,
            app_cache_ttl,
            link_cache_ttl,
            auth,
            token_leeway_secs,
        })
    }
}

/// A setting with a few named values (each with its spellings); unset or empty is the
/// first one.
fn choice<T: Copy>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    options: &[(&[&str], T)],
) -> Result<T, ConfigError> {
    let raw = lookup(name).unwrap_or_default();
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(options[0].1);
    }
    options
        .iter()
        .find(|(spellings, _)| spellings.contains(&raw))
        .map(|(_, value)| *value)
        .ok_or_else(|| ConfigError::Invalid {
            name,
            why: format!(
                "{raw:?} is none of {}",
                options
                    .iter()
                    .map(|(spellings, _)| spellings[0])
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = from(&[("TABLE_NAME", "t")]).unwrap();
        assert_eq!(c.table_name, "t");
        assert_eq!(c.limits.max_id_chars, 64);
        assert_eq!(c.limits.max_body_bytes, 16384);
        assert_eq!(c.limits.max_group_members_per_request, 96);
        assert_eq!(c.auth, AuthMode::Tokens);
        assert_eq!(c.token_leeway_secs, 30);
        assert_eq!(c.timestamp_unit, TimestampUnit::Seconds);
        assert_eq!(c.app_cache_ttl, Duration::from_secs(60));
        assert_eq!(c.link_cache_ttl, Duration::from_secs(10));
        assert_eq!(c.history_format, HistoryFormat::Docs);
        assert_eq!(c.unlinked_conversations, UnlinkedConversations::Allow);
    }

    #[test]
    fn history_format_and_unlinked_policy_settings() {
        let c = from(&[
            ("TABLE_NAME", "t"),
            ("IM_HISTORY_SIGNATURE_FORMAT", "demo"),
            ("IM_UNLINKED_CONVERSATIONS", "deny"),
        ])
        .unwrap();
        assert_eq!(c.history_format, HistoryFormat::Demo);
        assert_eq!(c.unlinked_conversations, UnlinkedConversations::Deny);
        assert!(from(&[("TABLE_NAME", "t"), ("IM_HISTORY_SIGNATURE_FORMAT", "v2")]).is_err());
        assert!(from(&[("TABLE_NAME", "t"), ("IM_UNLINKED_CONVERSATIONS", "maybe")]).is_err());
    }

    #[test]
    fn table_name_is_required() {
        assert!(matches!(from(&[]), Err(ConfigError::Missing("TABLE_NAME"))));
    }

    #[test]
    fn group_member_limit_cannot_exceed_one_transaction() {
        let err = from(&[
            ("TABLE_NAME", "t"),
            ("IM_MAX_GROUP_MEMBERS_PER_REQUEST", "100"),
        ]);
        assert!(matches!(err, Err(ConfigError::Invalid { .. })));
        let ok = from(&[
            ("TABLE_NAME", "t"),
            ("IM_MAX_GROUP_MEMBERS_PER_REQUEST", "10"),
        ]);
        assert_eq!(ok.unwrap().limits.max_group_members_per_request, 10);
    }

    #[test]
    fn auth_settings() {
        let c = from(&[
            ("TABLE_NAME", "t"),
            ("IM_AUTH_MODE", "authorizer"),
            ("IM_AUTH_APP_ID", "app"),
            ("IM_AUTH_ADMIN_CLAIM", "cognito:groups"),
            ("IM_AUTH_ADMIN_VALUE", "admin"),
        ])
        .unwrap();
        assert_eq!(
            c.auth,
            AuthMode::Authorizer {
                app_id: "app".into(),
                client_claim: "sub".into(),
                admin: Some(("cognito:groups".into(), "admin".into())),
            }
        );
        // No unauthenticated mode, and the authorizer mode must name its app.
        assert!(from(&[("TABLE_NAME", "t"), ("IM_AUTH_MODE", "none")]).is_err());
        assert!(from(&[("TABLE_NAME", "t"), ("IM_AUTH_MODE", "authorizer")]).is_err());
        assert!(from(&[("TABLE_NAME", "t"), ("IM_TOKEN_LEEWAY_SECONDS", "61")]).is_err());
    }

    #[test]
    fn timestamp_unit_setting() {
        let c = from(&[("TABLE_NAME", "t"), ("IM_TIMESTAMP_UNIT", "milliseconds")]).unwrap();
        assert_eq!(c.timestamp_unit, TimestampUnit::Milliseconds);
        assert!(from(&[("TABLE_NAME", "t"), ("IM_TIMESTAMP_UNIT", "hours")]).is_err());
    }
}

//! Settings, read once from the environment when a function (or the local server) starts.

use std::env;
use std::time::Duration;

use thiserror::Error;

pub use crate::model::policy::UnlinkedConversations;
pub use crate::model::signing::{HistoryFormat, TimestampUnit};

/// DynamoDB allows 100 actions in one transaction. Creating a group writes the group
/// item, the owner's membership, the idempotency record and the conversation link
/// besides the members; adding also checks the group and the caller. So at most 96
/// members fit in one transaction, whichever request it is: a create or add of more
/// goes in steps that are still all or nothing (`store::dynamo::bulk`).
pub const TRANSACTION_MEMBER_CAP: usize = 96;

/// The most `IM_MAX_ADMINS` may be.
pub const MAX_ADMINS_BOUND: usize = 1_000;

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
    /// Members removed, or made or unmade admins, in one request (one transaction).
    /// Creates and adds take up to the group's `max_members` (`store::dynamo::bulk`).
    pub max_group_members_per_request: usize,
    /// Room for a create or add of the largest group (5,000 ids of 64 characters as a
    /// JSON array are about 330 KB).
    pub max_body_bytes: usize,
    /// Admins of one group: they live on the group item, which every signature check on
    /// the group reads, so they are few (and the item stays far below DynamoDB's 400 KB).
    pub max_admins: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_id_chars: 64,
            max_name_chars: 128,
            max_signature_members: 100,
            max_group_members_per_request: TRANSACTION_MEMBER_CAP,
            max_body_bytes: 384 * 1024,
            max_admins: 100,
        }
    }
}

/// How long the store waits for DynamoDB, and how many times it asks: the bound that
/// turns storage that cannot be reached into a prompt 503 rather than a hang.
///
/// DynamoDB answers in a few milliseconds (p99 single-digit ms for a key read, tens for a
/// transaction), and a fresh TLS connection costs tens more, so the defaults sit two
/// orders of magnitude above normal and trip only when something is wrong:
/// - connect, 1 s: a lost SYN (which Linux resends after 1 s) is cheaper to retry on a
///   new connection than to wait out; under `sam local invoke` on emulated arm64 SYNs
///   hang and this is what ends each attempt;
/// - one attempt, 1.5 s: a slow answer is retried once on a fresh attempt within
///   the operation's bound (the SDK retries time-outs, I/O errors, 5xx and throttling);
/// - one operation, all attempts and back-off, 3 s: a request that finds storage gone
///   answers 503 within about 3 s (it stops at its first failed call), well inside the
///   functions' 10 s Lambda timeout, whatever the failure: refused (three attempts in
///   under half a second), SYNs dropped (a 1 s connect per attempt, the third cut short)
///   or a peer that never answers (a 1.5 s attempt, the second cut short). Init's
///   warm-up is bounded on its own (1.5 s) and leaves nothing behind for the first
///   request to wait on, so that request pays only its own bound (tested in
///   `e2e/tests/api/unreachable.rs`): at worst 1.5 s of init and 3 s of request;
/// - 3 attempts, the first retry after at most 100 ms (`INITIAL_BACKOFF`), doubling: DynamoDB's
///   throttling and blips clear in milliseconds, and the SDK's default 1 s base would
///   spend the whole operation bound sleeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynamoBounds {
    /// `IM_DYNAMODB_CONNECT_TIMEOUT_MS`
    pub connect_timeout: Duration,
    /// `IM_DYNAMODB_ATTEMPT_TIMEOUT_MS`
    pub attempt_timeout: Duration,
    /// `IM_DYNAMODB_OPERATION_TIMEOUT_MS`
    pub operation_timeout: Duration,
    /// `IM_DYNAMODB_MAX_ATTEMPTS`: the first try and the SDK's retries.
    pub max_attempts: u32,
}

impl DynamoBounds {
    /// The SDK's first back-off (jittered, doubled at each retry).
    pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| env::var(name).ok())
    }

    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let ms = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            let n = whole(lookup, name, default.as_millis() as usize, 60_000)?;
            Ok(Duration::from_millis(n as u64))
        };
        let bounds = Self {
            connect_timeout: ms("IM_DYNAMODB_CONNECT_TIMEOUT_MS", d.connect_timeout)?,
            attempt_timeout: ms("IM_DYNAMODB_ATTEMPT_TIMEOUT_MS", d.attempt_timeout)?,
            operation_timeout: ms("IM_DYNAMODB_OPERATION_TIMEOUT_MS", d.operation_timeout)?,
            max_attempts: whole(
                lookup,
                "IM_DYNAMODB_MAX_ATTEMPTS",
                d.max_attempts as usize,
                10,
            )? as u32,
        };
        if bounds.attempt_timeout > bounds.operation_timeout {
            return Err(ConfigError::Invalid {
                name: "IM_DYNAMODB_ATTEMPT_TIMEOUT_MS",
                why: "one attempt cannot take longer than the whole operation (IM_DYNAMODB_OPERATION_TIMEOUT_MS)".into(),
            });
        }
        Ok(bounds)
    }
}

impl Default for DynamoBounds {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(1000),
            attempt_timeout: Duration::from_millis(1500),
            operation_timeout: Duration::from_millis(3000),
            max_attempts: 3,
        }
    }
}

/// Which root certificates the DynamoDB client trusts (`IM_DYNAMODB_TRUST`, and the
/// endpoint's scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// None: the endpoint is plain `http://` (DynamoDB Local).
    Nothing,
    /// The compiled-in Amazon roots (the default).
    AmazonRoots,
    /// The machine's root certificates (`IM_DYNAMODB_TRUST=system`).
    System,
}

/// Whether a function's init opens its connection to DynamoDB (`IM_DYNAMODB_WARM_UP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmUp {
    /// Over TLS only (AWS), where the handshake is worth paying during init; not over
    /// plain http (DynamoDB Local on loopback), where a connection costs nothing and the
    /// call would only add a round trip to init.
    Tls,
    Always,
    Never,
}

/// Where the DynamoDB client connects and how, read once with the rest of the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoTarget {
    /// An endpoint instead of the SDK's regional one: `IM_DYNAMODB_ENDPOINT` when not
    /// empty, else `AWS_ENDPOINT_URL_DYNAMODB`, else `AWS_ENDPOINT_URL` (both ignored with
    /// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`), the SDK's own order. `sam local` hands
    /// a function only the variables its template declares, so the template declares
    /// `IM_DYNAMODB_ENDPOINT`, empty on AWS, and `--env-vars` points it at DynamoDB Local;
    /// declaring the SDK's variable instead would set it, empty, in every deployed function.
    pub endpoint: Option<String>,
    pub trust: Trust,
    pub warm_up: WarmUp,
}

impl DynamoTarget {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| env::var(name).ok())
    }

    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let ignore_configured = lookup("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let endpoint = set("IM_DYNAMODB_ENDPOINT").or_else(|| {
            if ignore_configured {
                None
            } else {
                set("AWS_ENDPOINT_URL_DYNAMODB").or_else(|| set("AWS_ENDPOINT_URL"))
            }
        });
        let plain_http = endpoint.as_deref().is_some_and(|e| {
            e.get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        });
        let trust = choice(
            lookup,
            "IM_DYNAMODB_TRUST",
            &[
                (&["amazon"], Trust::AmazonRoots),
                (&["system"], Trust::System),
            ],
        )?;
        let warm_up = choice(
            lookup,
            "IM_DYNAMODB_WARM_UP",
            &[
                (&["tls"], WarmUp::Tls),
                (&["always"], WarmUp::Always),
                (&["never"], WarmUp::Never),
            ],
        )?;
        Ok(Self {
            endpoint,
            trust: if plain_http { Trust::Nothing } else { trust },
            warm_up,
        })
    }

    /// Whether init should open the connection (see [`WarmUp`]).
    pub fn warm_up_at_init(&self) -> bool {
        match self.warm_up {
            WarmUp::Always => true,
            WarmUp::Never => false,
            WarmUp::Tls => self.trust != Trust::Nothing,
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
    pub dynamodb: DynamoBounds,
    pub dynamodb_target: DynamoTarget,
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
        let number = |name, default, max| whole(&lookup, name, default, max);
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
            // 1,000 admins of 64-character ids (the default id limit) are 64 KB at most.
            max_admins: number("IM_MAX_ADMINS", defaults.max_admins, MAX_ADMINS_BOUND)?,
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
            dynamodb: DynamoBounds::from_lookup(&lookup)?,
            dynamodb_target: DynamoTarget::from_lookup(&lookup)?,
        })
    }
}

/// A whole-number setting from 1 to `max`; unset is `default`.
fn whole(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: usize,
    max: usize,
) -> Result<usize, ConfigError> {
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
        assert_eq!(c.limits.max_body_bytes, 393216);
        assert_eq!(c.limits.max_group_members_per_request, 96);
        assert_eq!(c.auth, AuthMode::Tokens);
        assert_eq!(c.token_leeway_secs, 30);
        assert_eq!(c.timestamp_unit, TimestampUnit::Seconds);
        assert_eq!(c.app_cache_ttl, Duration::from_secs(60));
        assert_eq!(c.link_cache_ttl, Duration::from_secs(10));
        assert_eq!(c.history_format, HistoryFormat::Docs);
        assert_eq!(c.unlinked_conversations, UnlinkedConversations::Allow);
        assert_eq!(c.dynamodb, DynamoBounds::default());
    }

    #[test]
    fn dynamodb_bounds_settings() {
        let c = from(&[
            ("TABLE_NAME", "t"),
            ("IM_DYNAMODB_CONNECT_TIMEOUT_MS", "200"),
            ("IM_DYNAMODB_ATTEMPT_TIMEOUT_MS", "400"),
            ("IM_DYNAMODB_OPERATION_TIMEOUT_MS", "900"),
            ("IM_DYNAMODB_MAX_ATTEMPTS", "2"),
        ])
        .unwrap();
        assert_eq!(
            c.dynamodb,
            DynamoBounds {
                connect_timeout: Duration::from_millis(200),
                attempt_timeout: Duration::from_millis(400),
                operation_timeout: Duration::from_millis(900),
                max_attempts: 2,
            }
        );
        // No unbounded wait, and an attempt fits in the operation.
        assert!(from(&[
            ("TABLE_NAME", "t"),
            ("IM_DYNAMODB_OPERATION_TIMEOUT_MS", "0")
        ])
        .is_err());
        assert!(from(&[("TABLE_NAME", "t"), ("IM_DYNAMODB_MAX_ATTEMPTS", "11")]).is_err());
        assert!(from(&[
            ("TABLE_NAME", "t"),
            ("IM_DYNAMODB_OPERATION_TIMEOUT_MS", "1000")
        ])
        .is_err());
    }

    fn target(vars: &[(&str, &str)]) -> Result<DynamoTarget, ConfigError> {
        DynamoTarget::from_lookup(&|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    fn trust(vars: &[(&str, &str)]) -> Trust {
        target(vars).unwrap().trust
    }

    #[test]
    fn dynamodb_trust_follows_the_endpoint_and_the_setting() {
        assert_eq!(trust(&[]), Trust::AmazonRoots);
        assert_eq!(
            trust(&[("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000")]),
            Trust::Nothing
        );
        assert_eq!(
            trust(&[("AWS_ENDPOINT_URL", "HTTP://localhost:8000")]),
            Trust::Nothing
        );
        // The service-specific endpoint wins over the global one, as in the SDK.
        let t = target(&[
            ("AWS_ENDPOINT_URL_DYNAMODB", "https://dynamodb.example"),
            ("AWS_ENDPOINT_URL", "http://localhost:8000"),
        ])
        .unwrap();
        assert_eq!(t.trust, Trust::AmazonRoots);
        assert_eq!(t.endpoint.as_deref(), Some("https://dynamodb.example"));
        assert_eq!(
            trust(&[
                ("AWS_ENDPOINT_URL_DYNAMODB", "https://localstack.internal"),
                ("IM_DYNAMODB_TRUST", "system"),
            ]),
            Trust::System
        );
        let ignored = target(&[
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ])
        .unwrap();
        assert_eq!(
            (ignored.trust, ignored.endpoint),
            (Trust::AmazonRoots, None)
        );
        // The template's own variable wins, and is ignored while empty (as on AWS).
        let sam = target(&[
            ("IM_DYNAMODB_ENDPOINT", "http://172.17.0.1:8000"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "https://dynamodb.example"),
        ])
        .unwrap();
        assert_eq!(sam.trust, Trust::Nothing);
        assert_eq!(sam.endpoint.as_deref(), Some("http://172.17.0.1:8000"));
        assert_eq!(
            trust(&[
                ("IM_DYNAMODB_ENDPOINT", ""),
                ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            ]),
            Trust::Nothing
        );
        let aws = target(&[("IM_DYNAMODB_ENDPOINT", "")]).unwrap();
        assert_eq!((aws.trust, aws.endpoint), (Trust::AmazonRoots, None));
        // A misspelt setting is refused at start, not read as the default.
        assert!(matches!(
            target(&[("IM_DYNAMODB_TRUST", "sytem")]),
            Err(ConfigError::Invalid {
                name: "IM_DYNAMODB_TRUST",
                ..
            })
        ));
    }

    #[test]
    fn init_connects_over_tls_unless_told() {
        let at_init = |vars: &[(&str, &str)]| target(vars).unwrap().warm_up_at_init();
        let local = ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000");
        assert!(at_init(&[]));
        assert!(at_init(&[("IM_DYNAMODB_TRUST", "system")]));
        assert!(!at_init(&[local]));
        assert!(at_init(&[local, ("IM_DYNAMODB_WARM_UP", "always")]));
        assert!(!at_init(&[("IM_DYNAMODB_WARM_UP", "never")]));
        assert!(at_init(&[("IM_DYNAMODB_WARM_UP", "tls")]));
        assert!(matches!(
            target(&[("IM_DYNAMODB_WARM_UP", "sometimes")]),
            Err(ConfigError::Invalid {
                name: "IM_DYNAMODB_WARM_UP",
                ..
            })
        ));
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

//! The operation-signature protocol of LeanCloud-style realtime messaging:
//! `lowercase_hex(HMAC-SHA1(master_key, message))`, the message being the operation's
//! fields joined by single colons (an empty field keeps its place).
//!
//! The history message has two published layouts, and the vendor's cloud accepts the one
//! it was set up for, so a deployment chooses ([`HistoryFormat`], `IM_HISTORY_SIGNATURE_FORMAT`):
//!
//! - `docs` (the default): `app_id:client_id:conversation_id:nonce:timestamp`, as the
//!   vendor's written realtime guide gives it (its REST history API names the parts
//!   `client_id`, `nonce`, `signature_ts`);
//! - `demo`: `app_id:client_id:conversation_id:timestamp:nonce`, what the vendor's signing
//!   demo produces.
//!
//! `docs/protocol.md` records every message, where each comes from, and who may have it.
//!
//! The `demo` layout is byte-for-byte the open-conversation message with a single member
//! (`app_id:client_id:member:timestamp:nonce`), so under it an open-conversation signature
//! for member `X` is also a history signature for conversation `X`. That is why the
//! signature routes hold such an open-conversation request to the history rule whenever
//! `X` names a group's conversation, whichever layout is in use (`super::policy`).

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rand::distr::{Alphanumeric, SampleString};
use sha1::Sha1;

use super::ids::MemberList;
use super::secret::Secret;

/// Which published layout the history message follows (see the module notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistoryFormat {
    /// `app_id:client_id:conversation_id:nonce:timestamp` (the vendor's written guide;
    /// docs/protocol.md).
    #[default]
    Docs,
    /// `app_id:client_id:conversation_id:timestamp:nonce` (the vendor's signing demo;
    /// docs/protocol.md).
    Demo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    Seconds,
    Milliseconds,
}

/// Length of the random nonce; the documented examples use eight letters and digits.
pub const NONCE_LEN: usize = 8;

/// An operation the IM cloud checks a signature for.
#[derive(Debug, Clone, Copy)]
pub enum Operation<'a> {
    Login,
    StartConversation {
        members: &'a MemberList,
    },
    Invite {
        conversation_id: &'a str,
        members: &'a MemberList,
    },
    Kick {
        conversation_id: &'a str,
        members: &'a MemberList,
    },
    /// Query a conversation's message history, in the deployment's layout.
    History {
        conversation_id: &'a str,
        format: HistoryFormat,
    },
    /// The client blocks (or unblocks) a conversation for itself.
    ClientBlock {
        conversation_id: &'a str,
        block: bool,
    },
    /// The conversation blocks (or unblocks) clients.
    ConversationBlock {
        conversation_id: &'a str,
        members: &'a MemberList,
        block: bool,
    },
}

impl Operation<'_> {
    /// The action that ends the signed message, for the operations that have one.
    pub fn action(&self) -> Option<&'static str> {
        match self {
            Self::Invite { .. } => Some("invite"),
            Self::Kick { .. } => Some("kick"),
            Self::ClientBlock { block: true, .. } => Some("client-block-conversations"),
            Self::ClientBlock { block: false, .. } => Some("client-unblock-conversations"),
            Self::ConversationBlock { block: true, .. } => Some("conversation-block-clients"),
            Self::ConversationBlock { block: false, .. } => Some("conversation-unblock-clients"),
            Self::Login | Self::StartConversation { .. } | Self::History { .. } => None,
        }
    }

    /// The `action` the response names: the signed action, or `history` (whose message
    /// ends without one in both layouts).
    pub fn response_action(&self) -> Option<&'static str> {
        match self {
            Self::History { .. } => Some("history"),
            _ => self.action(),
        }
    }
}

/// The exact byte string that is signed.
pub fn message(
    app_id: &str,
    client_id: &str,
    op: &Operation<'_>,
    timestamp: &str,
    nonce: &str,
) -> String {
    let joined;
    let action = op.action().unwrap_or_default();
    let fields: Vec<&str> = match op {
        Operation::Login => vec![app_id, client_id, "", timestamp, nonce],
        Operation::StartConversation { members } => {
            joined = members.joined();
            vec![app_id, client_id, &joined, timestamp, nonce]
        }
        Operation::Invite {
            conversation_id,
            members,
        }
        | Operation::Kick {
            conversation_id,
            members,
        }
        | Operation::ConversationBlock {
            conversation_id,
            members,
            ..
        } => {
            joined = members.joined();
            let conv = *conversation_id;
            vec![app_id, client_id, conv, &joined, timestamp, nonce, action]
        }
        Operation::History {
            conversation_id,
            format: HistoryFormat::Docs,
        } => vec![app_id, client_id, conversation_id, nonce, timestamp],
        Operation::History {
            conversation_id,
            format: HistoryFormat::Demo,
        } => vec![app_id, client_id, conversation_id, timestamp, nonce],
        Operation::ClientBlock {
            conversation_id, ..
        } => vec![
            app_id,
            client_id,
            conversation_id,
            "",
            timestamp,
            nonce,
            action,
        ],
    };
    fields.join(":")
}

pub fn hmac_sha1_hex(key: &Secret, message: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(key.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A fresh nonce from the thread-local CSPRNG (ChaCha, seeded from the OS).
pub fn nonce() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), NONCE_LEN)
}

pub fn timestamp(unit: TimestampUnit, now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    match unit {
        TimestampUnit::Seconds => since.as_secs().to_string(),
        TimestampUnit::Milliseconds => since.as_millis().to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
}

/// Signs `op` now, with a fresh nonce.
pub fn sign(
    key: &Secret,
    app_id: &str,
    client_id: &str,
    op: &Operation<'_>,
    unit: TimestampUnit,
) -> Signature {
    let timestamp = timestamp(unit, SystemTime::now());
    let nonce = nonce();
    let signature = hmac_sha1_hex(key, &message(app_id, client_id, op, &timestamp, &nonce));
    Signature {
        timestamp,
        nonce,
        signature,
    }
}

#[cfg(test)]
mod tests {
    //! Expected values were computed with Python's `hmac` module, e.g.
    //! `hmac.new(b'masterkey-demo', b'demo-app:alice::1700000000:n0nce123', hashlib.sha1).hexdigest()`,
    //! never with this code.
    use super::*;
    use std::time::Duration;

    fn key() -> Secret {
        Secret::new("masterkey-demo")
    }

    fn members(s: &str) -> MemberList {
        MemberList::parse_joined("m", s, 100, 64).unwrap()
    }

    fn check(op: Operation<'_>, ts: &str, expected_msg: &str, expected_sig: &str) {
        let msg = message("demo-app", "alice", &op, ts, "n0nce123");
        assert_eq!(msg, expected_msg);
        assert_eq!(hmac_sha1_hex(&key(), &msg), expected_sig);
    }

    #[test]
    fn login_matches_worked_example() {
        check(
            Operation::Login,
            "1700000000",
            "demo-app:alice::1700000000:n0nce123",
            "c131cb8611937866bde68b1e56bef98214485b0f",
        );
    }

    #[test]
    fn login_with_millisecond_timestamp() {
        check(
            Operation::Login,
            "1700000000123",
            "demo-app:alice::1700000000123:n0nce123",
            "d9d9f8ce0ffa63765fa97a5e4a5cc4b6dd2759b1",
        );
    }

    #[test]
    fn start_conversation_uses_sorted_members() {
        let m = members("carol:bob:carol");
        check(
            Operation::StartConversation { members: &m },
            "1700000000",
            "demo-app:alice:bob:carol:1700000000:n0nce123",
            "5d8237285c5acad8017401dc394248c7e0ec2cfd",
        );
    }

    #[test]
    fn invite_kick_and_join() {
        let m = members("carol:bob");
        check(
            Operation::Invite {
                conversation_id: "conv-1",
                members: &m,
            },
            "1700000000",
            "demo-app:alice:conv-1:bob:carol:1700000000:n0nce123:invite",
            "698ad63a719750dde5dcceaea90f5ef38f292264",
        );
        let empty = members("");
        check(
            Operation::Invite {
                conversation_id: "conv-1",
                members: &empty,
            },
            "1700000000",
            "demo-app:alice:conv-1::1700000000:n0nce123:invite",
            "8047c823426b28bb1b7adb79815c6493db97c30a",
        );
        let bob = members("bob");
        check(
            Operation::Kick {
                conversation_id: "conv-1",
                members: &bob,
            },
            "1700000000",
            "demo-app:alice:conv-1:bob:1700000000:n0nce123:kick",
            "db744e2e1f202718b39eb56656dd7208b6c4bab1",
        );
    }

    /// Members signed in the order the vendor's SDK sends them (UTF-16 code units, see
    /// `ids::member_order`): the digests were computed outside this crate, by Python's
    /// `hmac.new(b"masterkey-demo", msg, hashlib.sha1)` over the list as Node's default
    /// `["ｹ", "𠮷", "bob"].sort()` orders it. In byte order (`bob:ｹ:𠮷`) they would differ.
    #[test]
    fn members_outside_the_bmp_sign_in_the_sdks_order() {
        let m = members("ｹ:𠮷:bob");
        check(
            Operation::Invite {
                conversation_id: "conv-1",
                members: &m,
            },
            "1700000000",
            "demo-app:alice:conv-1:bob:𠮷:ｹ:1700000000:n0nce123:invite",
            "3bdea9cb0a447123efac7763d2cfe5a7539e27e5",
        );
        check(
            Operation::Kick {
                conversation_id: "conv-1",
                members: &m,
            },
            "1700000000",
            "demo-app:alice:conv-1:bob:𠮷:ｹ:1700000000:n0nce123:kick",
            "c3e48636e34ad701cd521bacdffa48d30c4c07b1",
        );
    }

    #[test]
    fn history_in_both_layouts() {
        check(
            Operation::History {
                conversation_id: "conv-1",
                format: HistoryFormat::Docs,
            },
            "1700000000",
            "demo-app:alice:conv-1:n0nce123:1700000000",
            "2065b6158b71b125d314bf94bdd590e3af31a36d",
        );
        check(
            Operation::History {
                conversation_id: "conv-1",
                format: HistoryFormat::Demo,
            },
            "1700000000",
            "demo-app:alice:conv-1:1700000000:n0nce123",
            "fee353ec71cf21e2476d44ef9ca3ca4981db6a3a",
        );
    }

    /// Why the single-member open-conversation request needs the history rule: under the
    /// demo layout the two messages are the same bytes.
    #[test]
    fn demo_history_is_a_one_member_open_conversation() {
        let m = members("conv-1");
        let open = message(
            "demo-app",
            "alice",
            &Operation::StartConversation { members: &m },
            "1700000000",
            "n0nce123",
        );
        let history = |format| {
            message(
                "demo-app",
                "alice",
                &Operation::History {
                    conversation_id: "conv-1",
                    format,
                },
                "1700000000",
                "n0nce123",
            )
        };
        assert_eq!(open, history(HistoryFormat::Demo));
        assert_ne!(open, history(HistoryFormat::Docs));
    }

    #[test]
    fn blocks() {
        for (block, action, sig) in [
            (
                true,
                "client-block-conversations",
                "982101814b377d38a86e6264413d7b2d93455a87",
            ),
            (
                false,
                "client-unblock-conversations",
                "e1f9631115782c95c293cad6b19e8011e57ed12b",
            ),
        ] {
            check(
                Operation::ClientBlock {
                    conversation_id: "conv-1",
                    block,
                },
                "1700000000",
                &format!("demo-app:alice:conv-1::1700000000:n0nce123:{action}"),
                sig,
            );
        }
        let m = members("carol:bob");
        for (block, action, sig) in [
            (
                true,
                "conversation-block-clients",
                "190e4040998c65511392f42ee08ae36d6c14419a",
            ),
            (
                false,
                "conversation-unblock-clients",
                "afc6bbcdf6ba5e3daa5b53c5ec09d2d7fc54d6f7",
            ),
        ] {
            check(
                Operation::ConversationBlock {
                    conversation_id: "conv-1",
                    members: &m,
                    block,
                },
                "1700000000",
                &format!("demo-app:alice:conv-1:bob:carol:1700000000:n0nce123:{action}"),
                sig,
            );
        }
    }

    #[test]
    fn non_ascii_key_and_message_are_utf8_bytes() {
        assert_eq!(
            hmac_sha1_hex(&Secret::new("k€y-ünï"), "app-é:客户:1700000000123:abcDEF12"),
            "d53302b6e7698890775bbb70913bcfb37b5a06d6"
        );
    }

    #[test]
    fn nonces_are_alphanumeric_and_fresh() {
        let a = nonce();
        let b = nonce();
        assert_eq!(a.len(), NONCE_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn timestamps_in_both_units() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_987);
        assert_eq!(timestamp(TimestampUnit::Seconds, t), "1700000000");
        assert_eq!(timestamp(TimestampUnit::Milliseconds, t), "1700000000987");
    }
}

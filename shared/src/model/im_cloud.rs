//! An app's IM cloud settings: where its realtime-messaging REST API is, and how groups
//! are mirrored into it (each group a conversation of the app). The credential is the
//! app's master key, kept with the app; it is not part of these settings and is never
//! shown with them.

use std::fmt;

use super::ids::check_id;
use super::Invalid;

/// What deleting a group does to its conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDelete {
    /// The conversation stays, with its history.
    #[default]
    Keep,
    /// The conversation is deleted too.
    Delete,
}

impl OnDelete {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "keep" => Ok(Self::Keep),
            "delete" => Ok(Self::Delete),
            other => Err(Invalid::new(format!(
                "on_delete is keep or delete, not {other:?}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Delete => "delete",
        }
    }
}

/// The system messages a minute the mirror sends an app by default: the vendor's default
/// quota for a commercial app (a development app has 120, and gets 429s for a minute past
/// it; set its `--max-messages-per-minute`).
pub const DEFAULT_MESSAGES_PER_MINUTE: u32 = 1_800;
/// The highest quota the vendor sells.
pub const MAX_MESSAGES_PER_MINUTE: u32 = 9_000;

/// An app's IM cloud settings, valid by construction (see [`ImCloud::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImCloud {
    server: String,
    mirroring: bool,
    system_messages: bool,
    system_client: Option<String>,
    on_delete: OnDelete,
    messages_per_minute: u32,
}

impl ImCloud {
    /// Checks every rule: the server is an `https` origin (or `http` on a loopback
    /// address, for local runs and tests); system messages need the client id that sends
    /// them.
    pub fn new(
        server: &str,
        mirroring: bool,
        system_messages: bool,
        system_client: Option<String>,
        on_delete: OnDelete,
    ) -> Result<Self, Invalid> {
        let server = server_origin(server)?;
        if let Some(client) = &system_client {
            check_id("system_client", client, 64)?;
        }
        if system_messages && system_client.is_none() {
            return Err(Invalid::new(
                "system messages need the client id that sends them (system_client)",
            ));
        }
        Ok(Self {
            server,
            mirroring,
            system_messages,
            system_client,
            on_delete,
            messages_per_minute: DEFAULT_MESSAGES_PER_MINUTE,
        })
    }

    /// The most system messages a minute the mirror sends the app (1 to
    /// [`MAX_MESSAGES_PER_MINUTE`]): the app's quota at the vendor.
    pub fn with_messages_per_minute(self, per_minute: u32) -> Result<Self, Invalid> {
        if !(1..=MAX_MESSAGES_PER_MINUTE).contains(&per_minute) {
            return Err(Invalid::new(format!(
                "max_messages_per_minute is 1 to {MAX_MESSAGES_PER_MINUTE}, not {per_minute}"
            )));
        }
        Ok(Self {
            messages_per_minute: per_minute,
            ..self
        })
    }

    pub fn messages_per_minute(&self) -> u32 {
        self.messages_per_minute
    }

    /// The REST server's origin, without a trailing `/` (paths start `/1.2/rtm/`).
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn mirroring(&self) -> bool {
        self.mirroring
    }

    pub fn system_messages(&self) -> bool {
        self.system_messages
    }

    pub fn system_client(&self) -> Option<&str> {
        self.system_client.as_deref()
    }

    pub fn on_delete(&self) -> OnDelete {
        self.on_delete
    }
}

/// One line per setting, for the admin command; no key in it.
impl fmt::Display for ImCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_off = |b: bool| if b { "on" } else { "off" };
        writeln!(f, "server: {}", self.server)?;
        writeln!(f, "mirroring: {}", on_off(self.mirroring))?;
        writeln!(f, "system messages: {}", on_off(self.system_messages))?;
        writeln!(
            f,
            "system client: {}",
            self.system_client.as_deref().unwrap_or("-")
        )?;
        writeln!(f, "on delete: {}", self.on_delete.as_str())?;
        write!(f, "max messages per minute: {}", self.messages_per_minute)
    }
}

/// The origin of a REST server address: `https://host[:port]`, or `http://` on a
/// loopback host. Anything else (another scheme, credentials, a path, a query) is refused
/// rather than guessed at: a credential (the master key, Tencent's admin UserSig) is sent
/// to this address.
pub(crate) fn server_origin(raw: &str) -> Result<String, Invalid> {
    let bad = |why: &str| Invalid::new(format!("server {raw:?}: {why}"));
    let url = url::Url::parse(raw.trim()).map_err(|_| bad("not an absolute URL"))?;
    url.host_str().ok_or_else(|| bad("no host"))?;
    // A literal loopback address only: a name (`localhost` included) is whatever the
    // resolver answers, which need not be this machine, and the master key travels in
    // the clear over http.
    let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(bad(
                "http only on a literal loopback address (127.0.0.1, [::1]), for local runs and tests; use https",
            ))
        }
        _ => return Err(bad("the scheme must be https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials do not belong in the address"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "give the server's origin only, without a path or query",
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(server: &str) -> Result<ImCloud, Invalid> {
        ImCloud::new(server, true, false, None, OnDelete::Keep)
    }

    #[test]
    fn servers_are_https_origins_or_loopback_http() {
        for (raw, origin) in [
            (
                "https://abc.example-shared.com",
                "https://abc.example-shared.com",
            ),
            ("https://im.example.com/", "https://im.example.com"),
            ("https://im.example.com:8443", "https://im.example.com:8443"),
            ("HTTPS://IM.Example.com", "https://im.example.com"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://[::1]:9000", "http://[::1]:9000"),
        ] {
            assert_eq!(settings(raw).unwrap().server(), origin, "{raw}");
        }
        for bad in [
            "http://im.example.com",
            "http://localhost:9000",
            "http://localhost.:9000",
            "http://10.0.0.1:9000",
            "ftp://im.example.com",
            "https://user:pw@im.example.com",
            "https://im.example.com/1.2/rtm",
            "https://im.example.com/?x=1",
            "im.example.com",
            "",
        ] {
            assert!(settings(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_message_quota_is_bounded_and_defaults_to_the_commercial_one() {
        let cloud = ImCloud::new("https://x.example", true, false, None, OnDelete::Keep).unwrap();
        assert_eq!(cloud.messages_per_minute(), DEFAULT_MESSAGES_PER_MINUTE);
        assert_eq!(
            cloud
                .clone()
                .with_messages_per_minute(120)
                .unwrap()
                .messages_per_minute(),
            120
        );
        assert!(cloud.clone().with_messages_per_minute(0).is_err());
        assert!(cloud
            .with_messages_per_minute(MAX_MESSAGES_PER_MINUTE + 1)
            .is_err());
    }

    #[test]
    fn system_messages_need_a_valid_sender() {
        let s = |messages, client: Option<&str>| {
            ImCloud::new(
                "https://im.example.com",
                true,
                messages,
                client.map(str::to_owned),
                OnDelete::Delete,
            )
        };
        assert!(s(true, None).is_err());
        assert!(s(true, Some("a:b")).is_err());
        let ok = s(true, Some("system")).unwrap();
        assert_eq!(ok.system_client(), Some("system"));
        assert!(s(false, None).is_ok());
        assert_eq!(
            ok.to_string(),
            "server: https://im.example.com\nmirroring: on\nsystem messages: on\n\
             system client: system\non delete: delete\nmax messages per minute: 1800"
        );
    }

    #[test]
    fn on_delete_values() {
        assert_eq!(OnDelete::parse("keep").unwrap(), OnDelete::Keep);
        assert_eq!(OnDelete::parse("delete").unwrap(), OnDelete::Delete);
        assert!(OnDelete::parse("drop").is_err());
        assert_eq!(OnDelete::default(), OnDelete::Keep);
    }
}

//! An app's Tencent Cloud IM settings: which Tencent app (`SDKAppID`) its clients log in
//! to, where that app's REST API is and who calls it, and how groups are mirrored into
//! it. The credential, the app's secret key, is kept with the app but is not part of
//! these settings and is never shown with them (`../shared/notes/tencent-im.md`).

use std::fmt;

use super::im_cloud::{server_origin, OnDelete};
use super::usersig::check_identifier;
use super::Invalid;

/// The Tencent group type a mirrored group is created as (the REST `Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TencentGroupType {
    /// Anyone may find it; joining is closed (`ApplyJoinOption: DisableApply`) so that
    /// membership changes go through this service.
    #[default]
    Public,
    /// The SDK's "Work" group.
    Private,
    /// The SDK's "Meeting" group.
    ChatRoom,
}

impl TencentGroupType {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "Public" => Ok(Self::Public),
            "Private" => Ok(Self::Private),
            "ChatRoom" => Ok(Self::ChatRoom),
            other => Err(Invalid::new(format!(
                "group_type is Public, Private or ChatRoom, not {other:?}"
            ))),
        }
    }

    /// The REST API's `Type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "Public",
            Self::Private => "Private",
            Self::ChatRoom => "ChatRoom",
        }
    }
}

/// Tencent's own limit is 200 calls per second per API and app; more is refused there.
pub const MAX_CALLS_PER_SECOND: u32 = 200;
/// Half of Tencent's limit, leaving room for the app's own REST calls.
pub const DEFAULT_CALLS_PER_SECOND: u32 = 100;

/// One day: a client re-fetches its UserSig daily, and a leaked one is good for a day.
pub const DEFAULT_USERSIG_EXPIRE: u64 = 86_400;
/// Below five minutes a client spends more time re-fetching than a clock skew allows.
pub const MIN_USERSIG_EXPIRE: u64 = 300;
/// A UserSig cannot be revoked before it expires: past 30 days a leaked one, or one of a
/// client since removed, would be good for longer than any app should accept.
pub const MAX_USERSIG_EXPIRE: u64 = 30 * 86_400;

/// Tencent's longest custom `GroupId`, in bytes.
pub const MAX_GROUP_ID_BYTES: usize = 48;
/// The most decimal digits a group id (`u64`) has.
const GROUP_ID_DIGITS: usize = 20;
/// The longest prefix, so that prefix + any group id fits Tencent's limit.
pub const MAX_GROUP_ID_PREFIX_BYTES: usize = MAX_GROUP_ID_BYTES - GROUP_ID_DIGITS;
/// What Tencent's own generated group ids start with: a custom id must not.
const TENCENT_GENERATED: &str = "@TGS#";

/// The account every Tencent app has as its App admin; nobody may log in as it.
pub const TENCENT_ADMINISTRATOR: &str = "administrator";

/// What [`TencentCloud::new`] checks: the settings as an operator gives them, with the
/// defaults of [`TencentSpec::new`] for what is not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TencentSpec {
    pub server: String,
    pub sdk_app_id: u64,
    pub admin_identifier: String,
    pub group_type: TencentGroupType,
    pub mirroring: bool,
    pub system_messages: bool,
    pub on_delete: OnDelete,
    pub max_calls_per_second: u32,
    pub usersig_expire: u64,
    pub group_id_prefix: String,
    /// Whether a client may create a group in Tencent directly (the callback then allows
    /// `Group.CallbackBeforeCreateGroup`): for apps that want Tencent-only groups, which
    /// are never groups of this service. Off: groups are created through this service.
    pub client_creates: bool,
}

impl TencentSpec {
    /// The three settings without a default, and the defaults of the rest: group type
    /// `Public`, mirroring on, system messages off, on delete keep, 100 calls/s, a UserSig
    /// valid one day, no group id prefix, no client-made groups.
    pub fn new(server: &str, sdk_app_id: u64, admin_identifier: &str) -> Self {
        Self {
            server: server.to_owned(),
            sdk_app_id,
            admin_identifier: admin_identifier.to_owned(),
            group_type: TencentGroupType::default(),
            mirroring: true,
            system_messages: false,
            on_delete: OnDelete::default(),
            max_calls_per_second: DEFAULT_CALLS_PER_SECOND,
            usersig_expire: DEFAULT_USERSIG_EXPIRE,
            group_id_prefix: String::new(),
            client_creates: false,
        }
    }
}

/// An app's Tencent Cloud IM settings, valid by construction (see [`TencentCloud::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TencentCloud {
    spec: TencentSpec,
}

impl TencentCloud {
    /// Checks every rule: the server is an `https` origin (or `http` on a literal loopback
    /// address, for local runs and tests: the admin's UserSig travels to it); the
    /// `SDKAppID` is positive; the admin is an id Tencent takes; the call rate and the
    /// UserSig's life are within their bounds; the group id prefix leaves room for any
    /// group id.
    pub fn new(spec: TencentSpec) -> Result<Self, Invalid> {
        let server = server_origin(&spec.server)?;
        if spec.sdk_app_id == 0 {
            return Err(Invalid::new("sdk_app_id must be a positive number"));
        }
        check_identifier("admin_identifier", &spec.admin_identifier)?;
        if !(1..=MAX_CALLS_PER_SECOND).contains(&spec.max_calls_per_second) {
            return Err(Invalid::new(format!(
                "max_calls_per_second must be 1 to {MAX_CALLS_PER_SECOND} (Tencent's own limit per API)"
            )));
        }
        if !(MIN_USERSIG_EXPIRE..=MAX_USERSIG_EXPIRE).contains(&spec.usersig_expire) {
            return Err(Invalid::new(format!(
                "usersig_expire must be {MIN_USERSIG_EXPIRE} to {MAX_USERSIG_EXPIRE} seconds (5 minutes to 30 days)"
            )));
        }
        check_group_id_prefix(&spec.group_id_prefix)?;
        Ok(Self {
            spec: TencentSpec { server, ..spec },
        })
    }

    /// The REST server's origin, without a trailing `/` (paths start `/v4/`).
    pub fn server(&self) -> &str {
        &self.spec.server
    }

    pub fn sdk_app_id(&self) -> u64 {
        self.spec.sdk_app_id
    }

    /// The App admin the REST calls are made as.
    pub fn admin_identifier(&self) -> &str {
        &self.spec.admin_identifier
    }

    pub fn group_type(&self) -> TencentGroupType {
        self.spec.group_type
    }

    pub fn mirroring(&self) -> bool {
        self.spec.mirroring
    }

    pub fn system_messages(&self) -> bool {
        self.spec.system_messages
    }

    pub fn on_delete(&self) -> OnDelete {
        self.spec.on_delete
    }

    /// The most REST calls per second the mirror sends for this app.
    pub fn max_calls_per_second(&self) -> u32 {
        self.spec.max_calls_per_second
    }

    /// How long a client's UserSig is valid, in seconds.
    pub fn usersig_expire(&self) -> u64 {
        self.spec.usersig_expire
    }

    pub fn group_id_prefix(&self) -> &str {
        &self.spec.group_id_prefix
    }

    /// Whether clients may create (Tencent-only) groups in Tencent directly.
    pub fn client_creates(&self) -> bool {
        self.spec.client_creates
    }

    /// Our group id for a Tencent `GroupId`, if it is one of the form [`Self::group_id`]
    /// makes (the prefix, then a group id in its one decimal spelling); `None` for any
    /// other id, which no group of ours has.
    pub fn our_group_id(&self, tencent_group_id: &str) -> Option<u64> {
        let digits = tencent_group_id.strip_prefix(self.spec.group_id_prefix.as_str())?;
        super::ids::parse_group_id(digits).ok()
    }

    /// The Tencent `GroupId` of our group `group`: the prefix, then the decimal id, so
    /// that clients know one id, and a retried create names the same group.
    pub fn group_id(&self, group: u64) -> String {
        format!("{}{group}", self.spec.group_id_prefix)
    }

    /// Whether nobody may have a UserSig as `client_id`: the REST admin (this app's, and
    /// the `administrator` every Tencent app has) holds the app's whole REST API.
    pub fn is_admin_account(&self, client_id: &str) -> bool {
        client_id == self.spec.admin_identifier || client_id == TENCENT_ADMINISTRATOR
    }

    /// The settings as given, to change some and check them again.
    pub fn spec(&self) -> &TencentSpec {
        &self.spec
    }
}

/// Printable ASCII without spaces (a `GroupId` is printable ASCII, and a space in an id
/// is a mistake waiting to happen), not Tencent's generated-id prefix, and short enough
/// for prefix + 20 digits to fit in 48 bytes.
fn check_group_id_prefix(prefix: &str) -> Result<(), Invalid> {
    if prefix.len() > MAX_GROUP_ID_PREFIX_BYTES {
        return Err(Invalid::new(format!(
            "group_id_prefix must be at most {MAX_GROUP_ID_PREFIX_BYTES} bytes (with a 20-digit group id, Tencent takes {MAX_GROUP_ID_BYTES})"
        )));
    }
    if !prefix.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Invalid::new(
            "group_id_prefix must be printable ASCII without spaces",
        ));
    }
    if prefix.starts_with(TENCENT_GENERATED) {
        return Err(Invalid::new(format!(
            "group_id_prefix must not start with {TENCENT_GENERATED} (Tencent's own generated ids)"
        )));
    }
    Ok(())
}

/// One line per setting, for the admin command; no key in it.
impl fmt::Display for TencentCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_off = |b: bool| if b { "on" } else { "off" };
        let s = &self.spec;
        writeln!(f, "server: {}", s.server)?;
        writeln!(f, "sdk app id: {}", s.sdk_app_id)?;
        writeln!(f, "admin identifier: {}", s.admin_identifier)?;
        writeln!(f, "group type: {}", s.group_type.as_str())?;
        writeln!(
            f,
            "group id prefix: {}",
            if s.group_id_prefix.is_empty() {
                "-"
            } else {
                &s.group_id_prefix
            }
        )?;
        writeln!(f, "mirroring: {}", on_off(s.mirroring))?;
        writeln!(f, "system messages: {}", on_off(s.system_messages))?;
        writeln!(f, "on delete: {}", s.on_delete.as_str())?;
        writeln!(f, "max calls per second: {}", s.max_calls_per_second)?;
        writeln!(f, "client creates: {}", on_off(s.client_creates))?;
        write!(f, "usersig expire: {} s", s.usersig_expire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TencentSpec {
        TencentSpec::new("https://adminapisgp.im.qcloud.com/", 1_400_000_000, "admin")
    }

    fn with(change: impl FnOnce(&mut TencentSpec)) -> Result<TencentCloud, Invalid> {
        let mut s = spec();
        change(&mut s);
        TencentCloud::new(s)
    }

    #[test]
    fn defaults_and_accessors() {
        let t = TencentCloud::new(spec()).unwrap();
        assert_eq!(t.server(), "https://adminapisgp.im.qcloud.com");
        assert_eq!(t.sdk_app_id(), 1_400_000_000);
        assert_eq!(t.admin_identifier(), "admin");
        assert_eq!(t.group_type(), TencentGroupType::Public);
        assert!(t.mirroring());
        assert!(!t.system_messages());
        assert_eq!(t.on_delete(), OnDelete::Keep);
        assert_eq!(t.max_calls_per_second(), 100);
        assert_eq!(t.usersig_expire(), 86_400);
        assert_eq!(t.group_id_prefix(), "");
        assert_eq!(t.group_id(42), "42");
        assert!(!t.client_creates());
        assert_eq!(t.our_group_id("42"), Some(42));
        assert_eq!(
            t.to_string(),
            "server: https://adminapisgp.im.qcloud.com\nsdk app id: 1400000000\n\
             admin identifier: admin\ngroup type: Public\ngroup id prefix: -\n\
             mirroring: on\nsystem messages: off\non delete: keep\n\
             max calls per second: 100\nclient creates: off\nusersig expire: 86400 s"
        );
    }

    #[test]
    fn servers_follow_the_im_cloud_rule() {
        assert!(with(|s| s.server = "http://127.0.0.1:9000".into()).is_ok());
        for bad in [
            "http://adminapisgp.im.qcloud.com",
            "http://localhost:9000",
            "https://adminapisgp.im.qcloud.com/v4",
            "",
        ] {
            assert!(with(|s| s.server = bad.into()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn app_id_admin_rate_and_expiry_are_bounded() {
        assert!(with(|s| s.sdk_app_id = 0).is_err());
        assert!(with(|s| s.admin_identifier = String::new()).is_err());
        assert!(with(|s| s.admin_identifier = "x".repeat(33)).is_err());
        assert!(with(|s| s.admin_identifier = "ädmin".into()).is_err());
        for (n, ok) in [(0, false), (1, true), (200, true), (201, false)] {
            assert_eq!(with(|s| s.max_calls_per_second = n).is_ok(), ok, "{n}");
        }
        for (n, ok) in [
            (299, false),
            (300, true),
            (30 * 86_400, true),
            (30 * 86_400 + 1, false),
        ] {
            assert_eq!(with(|s| s.usersig_expire = n).is_ok(), ok, "{n}");
        }
    }

    #[test]
    fn group_id_prefixes_leave_room_for_any_group_id() {
        let t = with(|s| s.group_id_prefix = "app1-".into()).unwrap();
        assert_eq!(t.group_id(7), "app1-7");
        assert_eq!(t.our_group_id("app1-7"), Some(7));
        for other in ["7", "app1-", "app1-07", "app1-x", "@TGS#2abc", "app2-7"] {
            assert_eq!(t.our_group_id(other), None, "{other}");
        }
        let longest = "p".repeat(MAX_GROUP_ID_PREFIX_BYTES);
        let t = with(|s| s.group_id_prefix = longest.clone()).unwrap();
        assert_eq!(t.group_id(u64::MAX).len(), MAX_GROUP_ID_BYTES);
        assert!(t
            .to_string()
            .contains(&format!("group id prefix: {longest}\n")));
        for bad in [
            "p".repeat(MAX_GROUP_ID_PREFIX_BYTES + 1),
            "a b".into(),
            "群".into(),
            "tab\t".into(),
            "@TGS#".into(),
            "@TGS#x".into(),
        ] {
            assert!(
                with(|s| s.group_id_prefix = bad.clone()).is_err(),
                "{bad:?}"
            );
        }
        assert!(with(|s| s.group_id_prefix = "@TGS".into()).is_ok());
    }

    #[test]
    fn group_types_and_admin_accounts() {
        for t in [
            TencentGroupType::Public,
            TencentGroupType::Private,
            TencentGroupType::ChatRoom,
        ] {
            assert_eq!(TencentGroupType::parse(t.as_str()).unwrap(), t);
        }
        assert!(TencentGroupType::parse("public").is_err());
        assert!(TencentGroupType::parse("AVChatRoom").is_err());
        let t = TencentCloud::new(spec()).unwrap();
        assert!(t.is_admin_account("admin"));
        assert!(t.is_admin_account("administrator"));
        assert!(!t.is_admin_account("alice"));
    }
}

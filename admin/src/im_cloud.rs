//! `im-admin app im-cloud set|show`: an app's settings for each IM cloud it runs its
//! groups on (LeanCloud's realtime messaging, Tencent Cloud IM). One app may have both.
//! Keys are never options (read from a file or standard input) and never printed.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use im_shared::model::ids::check_id;
use im_shared::model::{
    Caller, ImCloud, OnDelete, TencentCloud, TencentGroupType, TencentSpec,
    DEFAULT_MESSAGES_PER_MINUTE,
};
use im_shared::store::{DynamoStore, StoreError};

use crate::keyinput;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    /// LeanCloud's realtime messaging; its credential is the app's master key.
    Leancloud,
    /// Tencent Cloud IM (Chat); its credential is the Tencent app's secret key.
    Tencent,
}

#[derive(Subcommand)]
pub enum ImCloudCommand {
    /// Set the app's settings for one IM cloud (--provider, LeanCloud by default);
    /// options not given keep their current values (or the defaults: mirroring on,
    /// system messages off, on delete keep; for Tencent also group type Public, 100
    /// calls/s, UserSigs valid 86400 s, no group id prefix). LeanCloud's credential is
    /// the app's master key; Tencent's secret key is read from --key-file (`-`: standard
    /// input), needed on the first set and kept when not given. No key is ever printed.
    Set(Box<SetArgs>),
    /// Show the app's settings for every IM cloud (never a key).
    Show { app_id: String },
}

/// `set`'s options (boxed in [`ImCloudCommand`]: they are many).
#[derive(Args)]
pub struct SetArgs {
    pub app_id: String,
    #[arg(long, value_enum, default_value_t = Provider::Leancloud)]
    pub provider: Provider,
    /// The REST server address: https://host[:port] (http only on a loopback IP).
    /// For Tencent, the region's REST domain (e.g. https://adminapisgp.im.qcloud.com).
    #[arg(long)]
    pub server: Option<String>,
    #[arg(long, value_parser = ["on", "off"])]
    pub mirroring: Option<String>,
    #[arg(long, value_parser = ["on", "off"])]
    pub system_messages: Option<String>,
    /// LeanCloud: the client id that sends system messages.
    #[arg(long)]
    pub system_client: Option<String>,
    /// What deleting a group does to its conversation (LeanCloud) or group (Tencent).
    #[arg(long, value_parser = ["keep", "delete"])]
    pub on_delete: Option<String>,
    /// LeanCloud: the most system messages a minute the mirror sends (the app's quota at
    /// the vendor: 120 for a development app, 1800 by default for a commercial one).
    #[arg(long, value_name = "N")]
    pub max_messages_per_minute: Option<u32>,
    /// Tencent: the app's SDKAppID.
    #[arg(long, value_name = "N")]
    pub sdk_app_id: Option<u64>,
    /// Tencent: the App admin the REST calls are made as (nobody gets its UserSig).
    #[arg(long, value_name = "ID")]
    pub admin_identifier: Option<String>,
    /// Tencent: the file holding the app's secret key (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Tencent: the type mirrored groups are created as.
    #[arg(long, value_parser = ["Public", "Private", "ChatRoom"])]
    pub group_type: Option<String>,
    /// Tencent: the most REST calls per second the mirror makes (1 to 200).
    #[arg(long, value_name = "N")]
    pub max_calls_per_second: Option<u32>,
    /// Tencent: how long a client's UserSig is valid (300 to 2592000 seconds).
    #[arg(long, value_name = "SECONDS")]
    pub usersig_expire: Option<u64>,
    /// Tencent: what each Tencent group id starts with (then our group id, decimal).
    #[arg(long, value_name = "P")]
    pub group_id_prefix: Option<String>,
    /// Tencent: the file holding the callback authentication token set in Tencent's
    /// console (`-`: standard input); until one is set, every callback is refused.
    #[arg(long, value_name = "FILE")]
    pub callback_token_file: Option<PathBuf>,
    /// Tencent: whether clients may create groups in Tencent directly (Tencent-only
    /// groups, never groups of this service); off by default.
    #[arg(long, value_parser = ["on", "off"])]
    pub client_creates: Option<String>,
}

/// The options of `set` that only one provider takes, named as on the command line.
struct Given {
    leancloud_only: Vec<&'static str>,
    tencent_only: Vec<&'static str>,
}

fn on(flag: Option<&str>) -> Option<bool> {
    flag.map(|f| f == "on")
}

fn invalid(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}

/// `NotFound` as the operator's message.
fn no_app<T>(app_id: &str, result: Result<T, StoreError>) -> Result<T> {
    match result {
        Err(StoreError::NotFound) => bail!("no app {app_id}"),
        other => Ok(other?),
    }
}

/// Refuses to reserve `id` (a system client or App admin, see
/// `im_shared::model::ReservedIds`) while it is a member of one of the app's groups: the
/// group functions refuse it as a new member from then on, so it must not be one already.
async fn not_a_member(store: &DynamoStore, app_id: &str, id: &str, option: &str) -> Result<()> {
    use im_shared::store::MemberStore;
    let operator = Caller {
        app_id: app_id.to_owned(),
        client_id: "im-admin".to_owned(),
        app_admin: true,
    };
    let page = store.client_groups(&operator, id, 1, None).await?;
    if let Some(group) = page.items.first() {
        bail!(
            "{option} {id}: that client id is a member of group {} of app {app_id}; it speaks for the service and cannot be a member, so remove it from the app's groups first (or choose another id)",
            group.group_id
        );
    }
    Ok(())
}

pub async fn run(store: &DynamoStore, action: ImCloudCommand) -> Result<()> {
    match action {
        ImCloudCommand::Show { app_id } => show(store, &app_id).await,
        ImCloudCommand::Set(args) => {
            let SetArgs {
                app_id,
                provider,
                server,
                mirroring,
                system_messages,
                system_client,
                on_delete,
                max_messages_per_minute,
                sdk_app_id,
                admin_identifier,
                key_file,
                group_type,
                max_calls_per_second,
                usersig_expire,
                group_id_prefix,
                callback_token_file,
                client_creates,
            } = *args;
            check_id("app_id", &app_id, 64).map_err(invalid)?;
            let given = Given {
                leancloud_only: [
                    ("--system-client", system_client.is_some()),
                    (
                        "--max-messages-per-minute",
                        max_messages_per_minute.is_some(),
                    ),
                ]
                .into_iter()
                .filter_map(|(name, set)| set.then_some(name))
                .collect(),
                tencent_only: [
                    ("--sdk-app-id", sdk_app_id.is_some()),
                    ("--admin-identifier", admin_identifier.is_some()),
                    ("--key-file", key_file.is_some()),
                    ("--group-type", group_type.is_some()),
                    ("--max-calls-per-second", max_calls_per_second.is_some()),
                    ("--usersig-expire", usersig_expire.is_some()),
                    ("--group-id-prefix", group_id_prefix.is_some()),
                    ("--callback-token-file", callback_token_file.is_some()),
                    ("--client-creates", client_creates.is_some()),
                ]
                .into_iter()
                .filter_map(|(name, set)| set.then_some(name))
                .collect(),
            };
            let on_delete = on_delete
                .as_deref()
                .map(OnDelete::parse)
                .transpose()
                .map_err(invalid)?;
            match provider {
                Provider::Leancloud => {
                    if !given.tencent_only.is_empty() {
                        bail!(
                            "{} are Tencent settings: add --provider tencent",
                            given.tencent_only.join(", ")
                        );
                    }
                    let old = no_app(&app_id, store.im_cloud(&app_id).await)?;
                    let server = server
                        .or_else(|| old.as_ref().map(|o| o.server().to_owned()))
                        .context("the first `set` of an app needs --server")?;
                    let settings = ImCloud::new(
                        &server,
                        on(mirroring.as_deref())
                            .or(old.as_ref().map(ImCloud::mirroring))
                            .unwrap_or(true),
                        on(system_messages.as_deref())
                            .or(old.as_ref().map(ImCloud::system_messages))
                            .unwrap_or(false),
                        system_client.or_else(|| {
                            old.as_ref()
                                .and_then(|o| o.system_client().map(str::to_owned))
                        }),
                        on_delete
                            .or(old.as_ref().map(ImCloud::on_delete))
                            .unwrap_or_default(),
                    )
                    .and_then(|s| {
                        s.with_messages_per_minute(
                            max_messages_per_minute
                                .or(old.as_ref().map(ImCloud::messages_per_minute))
                                .unwrap_or(DEFAULT_MESSAGES_PER_MINUTE),
                        )
                    })
                    .map_err(invalid)?;
                    if let Some(client) = settings.system_client() {
                        let before = old.as_ref().and_then(ImCloud::system_client);
                        if before != Some(client) {
                            not_a_member(store, &app_id, client, "--system-client").await?;
                        }
                    }
                    no_app(&app_id, store.set_im_cloud(&app_id, &settings).await)?;
                    println!("app {app_id}: IM cloud set\n{settings}");
                }
                Provider::Tencent => {
                    if !given.leancloud_only.is_empty() {
                        bail!(
                            "{} are LeanCloud settings: add --provider leancloud (Tencent needs no sender and paces calls with --max-calls-per-second)",
                            given.leancloud_only.join(", ")
                        );
                    }
                    let old = no_app(&app_id, store.tencent_cloud(&app_id).await)?;
                    let mut spec = match &old {
                        Some(old) => old.spec().clone(),
                        None => {
                            let needed: Vec<&str> = [
                                ("--server", server.is_none()),
                                ("--sdk-app-id", sdk_app_id.is_none()),
                                ("--admin-identifier", admin_identifier.is_none()),
                                ("--key-file", key_file.is_none()),
                            ]
                            .into_iter()
                            .filter_map(|(name, missing)| missing.then_some(name))
                            .collect();
                            if !needed.is_empty() {
                                bail!(
                                    "the first Tencent `set` of an app needs {}",
                                    needed.join(", ")
                                );
                            }
                            TencentSpec::new("", 0, "")
                        }
                    };
                    if let Some(v) = server {
                        spec.server = v;
                    }
                    if let Some(v) = sdk_app_id {
                        spec.sdk_app_id = v;
                    }
                    if let Some(v) = admin_identifier {
                        spec.admin_identifier = v;
                    }
                    if let Some(v) = group_type {
                        spec.group_type = TencentGroupType::parse(&v).map_err(invalid)?;
                    }
                    if let Some(v) = on(mirroring.as_deref()) {
                        spec.mirroring = v;
                    }
                    if let Some(v) = on(system_messages.as_deref()) {
                        spec.system_messages = v;
                    }
                    if let Some(v) = on_delete {
                        spec.on_delete = v;
                    }
                    if let Some(v) = max_calls_per_second {
                        spec.max_calls_per_second = v;
                    }
                    if let Some(v) = usersig_expire {
                        spec.usersig_expire = v;
                    }
                    if let Some(v) = group_id_prefix {
                        spec.group_id_prefix = v;
                    }
                    if let Some(v) = on(client_creates.as_deref()) {
                        spec.client_creates = v;
                    }
                    // Every rule is checked before the key is read or anything written.
                    let settings = TencentCloud::new(spec).map_err(invalid)?;
                    let admin = settings.admin_identifier();
                    if old.as_ref().map(TencentCloud::admin_identifier) != Some(admin) {
                        not_a_member(store, &app_id, admin, "--admin-identifier").await?;
                    }
                    if key_file
                        .as_deref()
                        .zip(callback_token_file.as_deref())
                        .is_some_and(|(k, t)| k == std::path::Path::new("-") && t == k)
                    {
                        bail!(
                            "--key-file and --callback-token-file cannot both read standard input"
                        );
                    }
                    let key = key_file
                        .as_deref()
                        .map(|file| keyinput::read_key(Some(file)))
                        .transpose()?;
                    let callback_token = callback_token_file
                        .as_deref()
                        .map(|file| keyinput::read_key(Some(file)))
                        .transpose()?;
                    match store.set_tencent(&app_id, &settings, key.as_ref()).await {
                        Err(StoreError::KeyNeeded) => {
                            bail!("the first Tencent `set` of app {app_id} needs --key-file")
                        }
                        other => no_app(&app_id, other)?,
                    }
                    // After the settings: the token is only taken by an app that has them.
                    if let Some(token) = &callback_token {
                        no_app(
                            &app_id,
                            store.set_tencent_callback_token(&app_id, token).await,
                        )?;
                    }
                    println!("app {app_id}: Tencent Cloud IM set\n{settings}");
                    if callback_token.is_some() {
                        println!("callback token: set (not shown)");
                    }
                }
            }
            Ok(())
        }
    }
}

/// Every cloud's settings, each under its `--provider` name, indented.
async fn show(store: &DynamoStore, app_id: &str) -> Result<()> {
    let leancloud = no_app(app_id, store.im_cloud(app_id).await)?;
    let tencent = no_app(app_id, store.tencent_cloud(app_id).await)?;
    if leancloud.is_none() && tencent.is_none() {
        println!("app {app_id} has no IM cloud settings: groups are not mirrored");
        return Ok(());
    }
    let section = |name: &str, settings: Option<String>| {
        let body = settings.unwrap_or_else(|| "not set".to_owned());
        let indented: Vec<String> = body.lines().map(|l| format!("  {l}")).collect();
        format!("{name}:\n{}", indented.join("\n"))
    };
    println!(
        "{}\n{}",
        section("leancloud", leancloud.map(|s| s.to_string())),
        section("tencent", tencent.map(|s| s.to_string()))
    );
    Ok(())
}

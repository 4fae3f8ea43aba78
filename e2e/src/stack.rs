//! The services under test, as `make test` (scripts/test.sh) starts them: their addresses
//! in `IM_TEST_*` variables, DynamoDB Local and its tables, apps registered for a test and
//! their tokens, the service served in-process with other settings, and the admin command.

use std::process::Command;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use im_shared::api::{router, AppState};
use im_shared::config::{Config, DynamoBounds};
use im_shared::model::Secret;
use im_shared::routes::Function;
use im_shared::store::dynamo::layout;
use im_shared::store::DynamoStore;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::distr::{Alphanumeric, SampleString};

use crate::repo::bin;

/// A setting `make test` passes to the tests (`IM_TEST_*`); panics when it is missing.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests with `make test`, which starts the services they use")
    })
}

fn random(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// Every master key the suite uses starts with `mk-test-`, so that `make test` can
/// look for any of them in the services' logs afterwards.
pub fn test_key() -> String {
    format!("mk-test-{}", random(24))
}

/// Token secrets likewise start with `ts-test-`.
pub fn test_token_secret() -> String {
    format!("ts-test-{}", random(40))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A name no other test (or earlier run) uses: `prefix`, the time and a random tail.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}-{}", random(6).to_lowercase())
}

/// An app registered in a table: its master key, and a token secret under its own kid.
#[derive(Clone)]
pub struct TestApp {
    pub app_id: String,
    pub master_key: String,
    pub kid: String,
    pub token_secret: String,
}

impl TestApp {
    pub async fn register(store: &DynamoStore, prefix: &str) -> Self {
        let app = Self {
            app_id: unique(prefix),
            master_key: test_key(),
            kid: unique("kid"),
            token_secret: test_token_secret(),
        };
        store
            .create_app(&app.app_id, &Secret::new(app.master_key.clone()))
            .await
            .unwrap();
        store
            .create_token_key(
                &app.kid,
                &app.app_id,
                &Secret::new(app.token_secret.clone()),
            )
            .await
            .unwrap();
        app
    }

    /// A token for `sub`, minted with the `jsonwebtoken` crate as an app's backend would.
    pub fn token(&self, sub: &str) -> String {
        self.token_with(serde_json::json!({"sub": sub, "exp": now_secs() + 600, "iat": now_secs()}))
    }

    pub fn admin_token(&self, sub: &str) -> String {
        self.token_with(serde_json::json!({"sub": sub, "exp": now_secs() + 600, "role": "admin"}))
    }

    pub fn token_with(&self, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(self.token_secret.as_bytes()),
        )
        .unwrap()
    }
}

/// A client of DynamoDB Local, bounded as the environment says (`make test` gives
/// DynamoDB Local under the suite's load longer than the defaults).
pub async fn ddb() -> Client {
    let bounds = DynamoBounds::from_env().expect("IM_DYNAMODB_* settings");
    DynamoStore::local_client(&env("IM_TEST_DDB_ENDPOINT"), &bounds).await
}

/// The local server's table (`IM_TEST_LOCAL_TABLE`).
pub async fn local_store() -> DynamoStore {
    DynamoStore::new(ddb().await, env("IM_TEST_LOCAL_TABLE"))
}

/// A new, empty table created from template.yaml's definition.
pub async fn fresh_store(prefix: &str) -> DynamoStore {
    let client = ddb().await;
    let name = unique(prefix);
    assert!(im_admin::table::ensure_table(&client, &name).await.unwrap());
    DynamoStore::new(client, name)
}

/// What a crash right after step 1 of `delete_group` leaves behind: the group marked
/// `deleting`, its items still there.
pub async fn mark_deleting(store: &DynamoStore, group_id: u64) {
    change_group_item(store, group_id, |u| {
        u.update_expression("SET #s = :d")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":d", AttributeValue::S("deleting".into()))
    })
    .await;
}

/// Changes group `group_id`'s item behind the service's back (`change` adds the update).
pub async fn change_group_item(
    store: &DynamoStore,
    group_id: u64,
    change: impl FnOnce(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
) {
    let update = store
        .client()
        .update_item()
        .table_name(store.table())
        .set_key(Some(layout::meta_key(group_id)));
    change(update).send().await.unwrap();
}

/// The service as `make run` builds it (the same router, every route, configured from
/// settings), on the local server's table with `settings` besides, served over HTTP on a
/// free port for the rest of the test. Returns its base URL.
pub async fn serve(settings: &[(&str, &str)]) -> String {
    serve_on(settings, local_store().await).await
}

/// [`serve`] on `store` (the local server's table, reached through any client).
pub async fn serve_on(settings: &[(&str, &str)], store: DynamoStore) -> String {
    let table = store.table().to_owned();
    let config = Config::from_lookup(|name| match name {
        "TABLE_NAME" => Some(table.clone()),
        other => settings
            .iter()
            .find(|(k, _)| *k == other)
            .map(|(_, v)| v.to_string()),
    })
    .unwrap();
    let service = router(AppState::new(config, Arc::new(store)), Function::ALL);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    base
}

/// A DynamoDB endpoint on loopback that refuses every connection: a port bound for a
/// moment, then let go.
pub fn closed_endpoint() -> String {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

/// A DynamoDB endpoint on loopback that accepts every connection and never answers, for
/// the rest of the test: what a store that hangs looks like.
pub async fn silent_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    endpoint
}

/// A store on the DynamoDB at `endpoint`, with the functions' default bounds.
pub async fn store_at(endpoint: &str) -> DynamoStore {
    let client = DynamoStore::local_client(endpoint, &DynamoBounds::default()).await;
    DynamoStore::new(client, "im-unreachable")
}

/// The `im-admin` command as an operator runs it against DynamoDB Local; the caller adds
/// the table and what to do.
pub fn admin_command() -> Command {
    let mut command = Command::new(bin("im-admin"));
    command
        .env("AWS_ENDPOINT_URL_DYNAMODB", env("IM_TEST_DDB_ENDPOINT"))
        // DynamoDB Local serves the table's stream at the same address.
        .env(
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
            env("IM_TEST_DDB_ENDPOINT"),
        )
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

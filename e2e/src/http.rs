//! The one HTTP client of the tests: a server, the table behind it and an app registered
//! there; requests carry the app's tokens, and every answer is checked against
//! `openapi.yaml` before a test sees it.

use im_shared::store::DynamoStore;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use crate::openapi::{self, Checked};
use crate::signatures::verify_signature_response;
use crate::stack::{env, local_store, TestApp};

/// A reqwest client builder for the tests. Cargo unifies features across the workspace,
/// so reqwest here is built with im-sync's rustls-without-a-provider: install the one
/// provider the workspace links (the AWS SDK's aws-lc-rs) before building a client.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}

/// [`client_builder`] with its defaults.
pub fn client() -> reqwest::Client {
    client_builder().build().expect("an HTTP client")
}

/// Requests "as" this client carry a token of the app's backend (`role: admin`).
pub const BACKEND: &str = "app-backend";

/// A server (its base URL), the table it serves from, and a new app registered there.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
    pub store: DynamoStore,
    pub app: TestApp,
}

impl Api {
    /// The local server (`make run`'s, at `IM_TEST_HTTP_URL`), with a new app.
    pub async fn local(prefix: &str) -> Api {
        Api::at(env("IM_TEST_HTTP_URL"), prefix).await
    }

    /// A server on the local server's table (see [`crate::stack::serve`]), with a new app.
    pub async fn at(base: String, prefix: &str) -> Api {
        let store = local_store().await;
        Api {
            http: client(),
            base,
            app: TestApp::register(&store, prefix).await,
            store,
        }
    }

    /// A token of the app for `client` ([`BACKEND`]: of the app's backend).
    fn token(&self, client: &str) -> String {
        if client == BACKEND {
            self.app.admin_token(client)
        } else {
            self.app.token(client)
        }
    }

    /// A request without credentials.
    pub fn request(&self, method: Method, path: &str) -> Req {
        Req {
            builder: self
                .http
                .request(method.clone(), format!("{}{path}", self.base)),
            method,
        }
    }

    /// A request as `client` of the app ([`BACKEND`]: as the app's backend).
    pub fn req(&self, client: &str, method: Method, path: &str) -> Req {
        self.request(method, path).bearer(&self.token(client))
    }

    /// Sends a request as `client`, with a JSON body if there is one.
    pub async fn send(
        &self,
        client: &str,
        method: Method,
        path: impl AsRef<str>,
        body: Option<Value>,
    ) -> Checked {
        self.req(client, method, path.as_ref())
            .send_json(body)
            .await
    }

    pub async fn get(&self, client: &str, path: impl AsRef<str>) -> Checked {
        self.send(client, Method::GET, path, None).await
    }

    /// Creates a group as `owner`; its id.
    pub async fn create(&self, owner: &str, body: Value) -> u64 {
        created_group(
            self.send(owner, Method::POST, "/im/group", Some(body))
                .await,
        )
        .await
    }

    /// `client` sets (or moves) group `id`'s conversation with a `PUT`: the status.
    pub async fn link(&self, client: &str, id: u64, conversation: &str) -> u16 {
        self.send(
            client,
            Method::PUT,
            format!("/im/group/{id}"),
            Some(serde_json::json!({ "conversation_id": conversation })),
        )
        .await
        .status()
        .as_u16()
    }

    /// `client`'s signature on `path` (below `/signature/`, with `{a}` for the app id): the
    /// status, and for a 200 a check of the signature against Python's HMAC.
    pub async fn sign(&self, client: &str, path: &str) -> u16 {
        let resp = self
            .get(
                client,
                format!("/signature/{path}").replace("{a}", &self.app.app_id),
            )
            .await;
        let status = resp.status().as_u16();
        if status == 200 {
            verify_signature_response(&resp.json().await.unwrap(), &self.app.master_key);
        }
        status
    }
}

/// The id of the group whose creation answered `resp`, which must be a 201.
pub async fn created_group(resp: Checked) -> u64 {
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["group_id"]
        .as_u64()
        .unwrap()
}

/// A request being built; sending it checks the answer against openapi.yaml.
pub struct Req {
    method: Method,
    builder: RequestBuilder,
}

impl Req {
    pub fn bearer(self, token: &str) -> Self {
        Self {
            builder: self.builder.bearer_auth(token),
            ..self
        }
    }

    pub fn header(self, name: &str, value: impl AsRef<[u8]>) -> Self {
        Self {
            builder: self.builder.header(name, value.as_ref()),
            ..self
        }
    }

    pub fn json(self, body: &Value) -> Self {
        Self {
            builder: self.builder.json(body),
            ..self
        }
    }

    /// A body as it is, with its content type.
    pub fn body(self, content_type: &str, body: &str) -> Self {
        Self {
            builder: self
                .builder
                .header("content-type", content_type)
                .body(body.to_owned()),
            ..self
        }
    }

    pub async fn send(self) -> Checked {
        openapi::send(&self.method, self.builder).await
    }

    /// Sends it with a JSON body if there is one.
    pub async fn send_json(self, body: Option<Value>) -> Checked {
        match body {
            Some(b) => self.json(&b),
            None => self,
        }
        .send()
        .await
    }
}

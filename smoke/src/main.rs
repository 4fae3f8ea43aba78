//! `im-smoke URL TOKEN APP`: the post-deploy check any pipeline can run (`make smoke`).
//!
//! 1. `GET /health` answers 200;
//! 2. a login signature for the token's client (its `sub`) has the documented shape;
//! 3. a group created by that client can be read back, and is deleted (also when a step
//!    after its creation fails, so the check cleans up after itself).
//!
//! It prints one line per step and exits 1 with the step and what was wrong on the first
//! failure. The token is never printed. Arguments may also come from the environment:
//! `SMOKE_URL`, `SMOKE_TOKEN`, `SMOKE_APP`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::Engine;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

struct Smoke {
    http: Client,
    base: String,
    token: String,
    app: String,
    client: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => {
            println!("smoke: all checks passed");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("smoke: FAILED: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn arg(args: &[String], at: usize, var: &str) -> Result<String> {
    args.get(at)
        .cloned()
        .or_else(|| std::env::var(var).ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("usage: im-smoke URL TOKEN APP (or {var} in the environment)"))
}

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = arg(&args, 0, "SMOKE_URL")?.trim_end_matches('/').to_owned();
    let token = arg(&args, 1, "SMOKE_TOKEN")?;
    let app = arg(&args, 2, "SMOKE_APP")?;
    let client = token_subject(&token)?;
    // Cargo unifies reqwest's features over the workspace: rustls without a provider, so
    // install the one the workspace links (aws-lc-rs) first.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let http = Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .context("building the HTTP client")?;
    let smoke = Smoke {
        http,
        base,
        token,
        app,
        client,
    };
    println!(
        "smoke: {} as client {:?} of app {:?}",
        smoke.base, smoke.client, smoke.app
    );
    smoke.health().await.context("GET /health")?;
    println!("smoke: health ok");
    smoke.login().await.context("login signature")?;
    println!("smoke: login signature ok");
    smoke.group().await?;
    Ok(())
}

/// The token's `sub` claim, read without verifying (the service verifies it).
fn token_subject(token: &str) -> Result<String> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow!("TOKEN is not a JWT (header.payload.signature)"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .context("TOKEN's payload is not base64url")?;
    let claims: Value = serde_json::from_slice(&bytes).context("TOKEN's payload is not JSON")?;
    claims["sub"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("TOKEN has no `sub` claim"))
}

impl Smoke {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        auth: bool,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if auth {
            req = req.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}: no answer"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, json))
    }

    async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> Result<Value> {
        let (status, json) = self.call(method.clone(), path, body, true).await?;
        ensure!(
            status.as_u16() == want,
            "{method} {path}: expected {want}, got {status}: {json}"
        );
        Ok(json)
    }

    async fn health(&self) -> Result<()> {
        let (status, body) = self.call(Method::GET, "/health", None, false).await?;
        ensure!(
            status == StatusCode::OK,
            "expected 200, got {status}: {body}"
        );
        Ok(())
    }

    async fn login(&self) -> Result<()> {
        let path = format!(
            "/signature/login/{}/{}",
            encode(&self.app),
            encode(&self.client)
        );
        let r = self.expect(Method::GET, &path, None, 200).await?;
        check_login(&r, &self.app, &self.client)
    }

    async fn group(&self) -> Result<()> {
        let name = format!("smoke-{}", std::process::id());
        let created = self
            .expect(
                Method::POST,
                "/im/group",
                Some(json!({"group_name": name, "member_client_ids": [self.client]})),
                201,
            )
            .await
            .context("create a group")?;
        let id = match &created["group_id"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => bail!("create a group: no group_id in the answer ({other})"),
        };
        println!("smoke: group {id} created");
        // Read it back; delete it whatever the read found.
        let read = self
            .expect(Method::GET, &format!("/im/group/{id}"), None, 200)
            .await
            .context("read the group back")
            .and_then(|g| {
                ensure!(
                    g["group_name"] == name.as_str() && g["owner"] == self.client.as_str(),
                    "read the group back: expected name {name:?} owned by {:?}, got {g}",
                    self.client
                );
                Ok(())
            });
        let deleted = self
            .expect(Method::DELETE, &format!("/im/group/{id}"), None, 204)
            .await
            .with_context(|| format!("delete group {id} (it may be left behind)"));
        read?;
        deleted?;
        println!("smoke: group {id} read and deleted");
        let (status, _) = self
            .call(Method::GET, &format!("/im/group/{id}"), None, true)
            .await?;
        ensure!(
            status == StatusCode::NOT_FOUND,
            "group {id} still readable after its delete ({status})"
        );
        Ok(())
    }
}

/// A path segment, percent-encoded (ids are URL-decoded by the service).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `{app_id, client_id, timestamp, nonce, signature}`: the app and client asked for, a
/// decimal timestamp, a nonce, and 40 lowercase hex digits (HMAC-SHA1).
fn check_login(r: &Value, app: &str, client: &str) -> Result<()> {
    ensure!(
        r["app_id"] == app,
        "app_id is {}, expected {app:?}",
        r["app_id"]
    );
    ensure!(
        r["client_id"] == client,
        "client_id is {}, expected {client:?}",
        r["client_id"]
    );
    let timestamp = r["timestamp"].as_str().unwrap_or_default();
    ensure!(
        !timestamp.is_empty() && timestamp.bytes().all(|b| b.is_ascii_digit()),
        "timestamp {} is not a decimal string",
        r["timestamp"]
    );
    ensure!(
        r["nonce"].as_str().is_some_and(|n| !n.is_empty()),
        "no nonce: {r}"
    );
    let signature = r["signature"].as_str().unwrap_or_default();
    ensure!(
        signature.len() == 40
            && signature
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "signature {} is not 40 lowercase hex digits",
        r["signature"]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subject_and_checks_the_login_shape() {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!("{}.{}.sig", b64("{}"), b64(r#"{"sub":"alice","exp":1}"#));
        assert_eq!(token_subject(&token).unwrap(), "alice");
        assert!(token_subject("nope").is_err());
        assert!(token_subject(&format!("x.{}.y", b64("{}"))).is_err());

        let good = json!({"app_id": "a", "client_id": "alice", "timestamp": "1700000000",
            "nonce": "n1", "signature": "0123456789abcdef0123456789abcdef01234567"});
        check_login(&good, "a", "alice").unwrap();
        for (field, bad) in [
            ("client_id", json!("bob")),
            ("timestamp", json!("12x")),
            ("nonce", json!("")),
            (
                "signature",
                json!("0123456789ABCDEF0123456789abcdef01234567"),
            ),
        ] {
            let mut r = good.clone();
            r[field] = bad;
            assert!(check_login(&r, "a", "alice").is_err(), "{field}");
        }
        assert_eq!(encode("a b:c"), "a%20b%3Ac");
    }
}

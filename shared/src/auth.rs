//! Bearer tokens: verifying them (for the `tokens` mode of `api::extract::caller`) and
//! minting them (for the admin command, the local run and tests). Two modes of
//! authentication exist (`crate::config::AuthMode`):
//!
//! - tokens: `Authorization: Bearer <JWT>`, HS256 only, signed by the app's backend with a
//!   secret stored in the table under the token's `kid`; `sub` is the client id, `exp` is
//!   required, `nbf` and `iat` are honoured, `role: "admin"` marks the app's backend;
//! - authorizer: API Gateway's JWT authorizer has verified the token; its claims arrive in
//!   the Lambda request context.
//!
//! Every failure is the same 401: the caller is not told which check failed.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::model::ids::check_id;
use crate::model::{Caller, Secret, TokenKey};

/// The one answer to every failed check: the caller is not told which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unauthorized")]
pub struct Unauthorized;

const MAX_KID_CHARS: usize = 128;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The `kid` a token names, after checking that its header asks for HS256 (a token whose
/// `alg` is `none` or anything else never reaches a key).
pub fn token_kid(token: &str) -> Result<String, Unauthorized> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Unauthorized)?;
    if header.alg != Algorithm::HS256 {
        return Err(Unauthorized);
    }
    let kid = header.kid.ok_or(Unauthorized)?;
    if kid.is_empty() || kid.chars().count() > MAX_KID_CHARS || kid.chars().any(char::is_control) {
        return Err(Unauthorized);
    }
    Ok(kid)
}

/// Verifies the token's signature and claims with `key`.
pub fn verify_with_key(
    token: &str,
    key: &TokenKey,
    leeway: u64,
    max_id_chars: usize,
) -> Result<Caller, Unauthorized> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = leeway;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(key.secret.expose().as_bytes()),
        &validation,
    )
    .map_err(|_| Unauthorized)?;
    let claims = data.claims;
    if claims.iat.is_some_and(|iat| iat > now() + leeway) {
        return Err(Unauthorized);
    }
    check_id("sub", &claims.sub, max_id_chars).map_err(|_| Unauthorized)?;
    Ok(Caller {
        app_id: key.app_id.clone(),
        client_id: claims.sub,
        app_admin: claims.role.as_deref() == Some("admin"),
    })
}

/// Mints a token (for the admin command, the local run and tests; apps mint their own).
pub fn mint(
    kid: &str,
    secret: &Secret,
    claims: &Claims,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
}

/// Claims for a token valid from now for `ttl_secs`.
pub fn claims_for(client_id: &str, admin: bool, ttl_secs: u64) -> Claims {
    let now = now();
    Claims {
        sub: client_id.to_owned(),
        exp: now + ttl_secs,
        nbf: None,
        iat: Some(now),
        role: admin.then(|| "admin".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use proptest::prelude::*;

    fn key() -> TokenKey {
        TokenKey {
            app_id: "app".into(),
            secret: Secret::new("a-token-secret-of-at-least-32-bytes!"),
        }
    }

    fn check(token: &str) -> Result<Caller, Unauthorized> {
        let kid = token_kid(token)?;
        assert_eq!(kid, "k1");
        verify_with_key(token, &key(), 30, 64)
    }

    fn token(claims: &Claims) -> String {
        mint("k1", &key().secret, claims).unwrap()
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn a_valid_token_names_the_caller() {
        let caller = check(&token(&claims_for("alice", false, 60))).unwrap();
        assert_eq!(caller.client_id, "alice");
        assert_eq!(caller.app_id, "app");
        assert!(!caller.app_admin);
        assert!(
            check(&token(&claims_for("backend", true, 60)))
                .unwrap()
                .app_admin
        );
    }

    #[test]
    fn time_claims_are_enforced_with_leeway() {
        let now = now();
        let mut c = claims_for("alice", false, 60);
        c.exp = now - 31;
        assert!(check(&token(&c)).is_err(), "expired beyond the leeway");
        c.exp = now - 5;
        assert!(check(&token(&c)).is_ok(), "within the leeway");
        let mut c = claims_for("alice", false, 600);
        c.nbf = Some(now + 120);
        assert!(check(&token(&c)).is_err(), "not yet valid");
        let mut c = claims_for("alice", false, 600);
        c.iat = Some(now + 120);
        assert!(check(&token(&c)).is_err(), "issued in the future");
    }

    #[test]
    fn sub_and_exp_are_required() {
        let secret = key().secret;
        let enc = EncodingKey::from_secret(secret.expose().as_bytes());
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let no_exp =
            jsonwebtoken::encode(&header, &serde_json::json!({"sub": "alice"}), &enc).unwrap();
        assert!(check(&no_exp).is_err());
        let no_sub =
            jsonwebtoken::encode(&header, &serde_json::json!({"exp": now() + 60}), &enc).unwrap();
        assert!(check(&no_sub).is_err());
        let bad_sub = token(&claims_for("a:b", false, 60));
        assert!(check(&bad_sub).is_err());
    }

    #[test]
    fn other_algorithms_and_keys_are_refused() {
        let claims = claims_for("alice", false, 60);
        // alg: none, with and without a signature part.
        let header = b64(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": "k1"}));
        let payload = b64(&serde_json::to_value(&claims).unwrap());
        assert!(token_kid(&format!("{header}.{payload}.")).is_err());
        assert!(token_kid(&format!("{header}.{payload}")).is_err());
        // HS512 with the right secret: not the configured algorithm.
        let mut h = Header::new(Algorithm::HS512);
        h.kid = Some("k1".into());
        let hs512 = jsonwebtoken::encode(
            &h,
            &claims,
            &EncodingKey::from_secret(key().secret.expose().as_bytes()),
        )
        .unwrap();
        assert!(token_kid(&hs512).is_err());
        // A header that claims HS256 over a body signed with another secret.
        let forged = mint(
            "k1",
            &Secret::new("another-secret-another-secret-xx"),
            &claims,
        )
        .unwrap();
        assert!(check(&forged).is_err());
        // A token whose header was swapped after signing.
        let good = token(&claims);
        let parts: Vec<&str> = good.split('.').collect();
        let other_header =
            b64(&serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": "k1", "x": 1}));
        assert!(check(&format!("{other_header}.{}.{}", parts[1], parts[2])).is_err());
        // No kid at all.
        let plain = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"x"),
        )
        .unwrap();
        assert!(token_kid(&plain).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_tokens_never_panic_and_never_pass(s in "[A-Za-z0-9_.=-]{0,400}") {
            let refused = token_kid(&s).and_then(|_| verify_with_key(&s, &key(), 30, 64)).is_err();
            prop_assert!(refused);
        }

        #[test]
        fn arbitrary_bytes_in_a_token_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = token_kid(&s);
            let _ = verify_with_key(&s, &key(), 30, 64);
        }

        #[test]
        fn minted_tokens_round_trip(sub in "[a-zA-Z0-9_@.-]{1,64}", admin in any::<bool>(), ttl in 1u64..100_000) {
            let caller = check(&token(&claims_for(&sub, admin, ttl))).unwrap();
            prop_assert_eq!(caller.client_id, sub);
            prop_assert_eq!(caller.app_admin, admin);
        }
    }
}

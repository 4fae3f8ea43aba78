//! The functions' DynamoDB client, made for a fast cold start.
//!
//! The SDK's default HTTPS client trusts the machine's root certificates: at its first
//! request it reads and parses every file under `/etc/ssl/certs` (a few milliseconds of
//! a Lambda's init). DynamoDB's endpoints are served under Amazon's own roots, so this
//! client trusts only those, compiled in (`shared/certs/amazon-root-cas.pem`): no file is
//! read, and five certificates are parsed instead of about 150. An `http://` endpoint
//! (DynamoDB Local) needs no roots at all. For an `https://` endpoint served under
//! another CA, `IM_DYNAMODB_TRUST=system` trusts the machine's roots instead.
//!
//! [`DynamoStore::warm_up`](super::DynamoStore::warm_up) then opens the connection during
//! init, so the first request does not pay the TCP and TLS handshakes.

use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::Builder;

/// Amazon Root CA 1 to 4 and Starfield Services Root Certificate Authority - G2 (the
/// file names their source and fingerprints).
pub const AMAZON_ROOT_CAS: &[u8] = include_bytes!("../../../certs/amazon-root-cas.pem");

/// Which root certificates the client trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// None: the endpoint is plain `http://` (DynamoDB Local).
    Nothing,
    /// The compiled-in Amazon roots (the default).
    AmazonRoots,
    /// The machine's root certificates (`IM_DYNAMODB_TRUST=system`).
    System,
}

impl Trust {
    /// The trust the client needs, from the environment the SDK reads its endpoint from
    /// (`AWS_ENDPOINT_URL_DYNAMODB`, then `AWS_ENDPOINT_URL`) and `IM_DYNAMODB_TRUST`.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Self {
        let endpoint = endpoint_override(&var).or_else(|| {
            if var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            {
                None
            } else {
                var("AWS_ENDPOINT_URL_DYNAMODB")
                    .or_else(|| var("AWS_ENDPOINT_URL"))
                    .filter(|e| !e.is_empty())
            }
        });
        if endpoint.is_some_and(|e| {
            e.get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        }) {
            return Trust::Nothing;
        }
        match var("IM_DYNAMODB_TRUST").as_deref() {
            Some("system") => Trust::System,
            _ => Trust::AmazonRoots,
        }
    }
}

/// `IM_DYNAMODB_ENDPOINT`, when set and not empty: a DynamoDB endpoint that wins over the
/// SDK's own settings. `sam local` passes a function only the variables its template
/// declares, so the template declares this one, empty on AWS (where the SDK resolves the
/// regional endpoint), and `--env-vars` points it at DynamoDB Local. Declaring the SDK's
/// own `AWS_ENDPOINT_URL_DYNAMODB` instead would set it, empty, in every deployed function.
pub fn endpoint_override(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    var("IM_DYNAMODB_ENDPOINT").filter(|e| !e.is_empty())
}

/// The HTTP client for the SDK: rustls on aws-lc-rs (the SDK's own default provider),
/// trusting what `trust` says. The roots are parsed when the SDK first uses the client.
pub fn http_client(trust: Trust) -> SharedHttpClient {
    let store = match trust {
        // A plain-http endpoint: the connector still accepts http:// URIs.
        Trust::Nothing => TrustStore::empty(),
        Trust::AmazonRoots => TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(AMAZON_ROOT_CAS),
        Trust::System => TrustStore::default().with_native_roots(true),
    };
    let context = TlsContext::builder()
        .with_trust_store(store)
        .build()
        .expect("a TLS context with a trust store always builds");
    Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn compiled_in_roots_are_the_five_amazon_cas_and_parse() {
        let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(AMAZON_ROOT_CAS)
            .collect::<Result<_, _>>()
            .expect("valid PEM");
        assert_eq!(ders.len(), 5);
        let mut roots = rustls::RootCertStore::empty();
        let (added, rejected) = roots.add_parsable_certificates(ders.clone());
        assert_eq!((added, rejected), (5, 0));
        // Each certificate's subject names the CA (DER holds the CN as plain text).
        for (der, name) in ders.iter().zip([
            "Amazon Root CA 1",
            "Amazon Root CA 2",
            "Amazon Root CA 3",
            "Amazon Root CA 4",
            "Starfield Services Root Certificate Authority - G2",
        ]) {
            let bytes: &[u8] = der.as_ref();
            assert!(
                bytes.windows(name.len()).any(|w| w == name.as_bytes()),
                "{name} missing"
            );
        }
        // Their SHA-256 fingerprints, as the PEM file's comments list them.
        let text = std::str::from_utf8(AMAZON_ROOT_CAS).unwrap();
        for der in &ders {
            use sha2::Digest;
            let hex: Vec<String> = sha2::Sha256::digest(der.as_ref())
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect();
            let fingerprint = hex.join(":");
            assert!(text.contains(&fingerprint), "{fingerprint} not listed");
        }
    }

    fn trust(vars: &[(&str, &str)]) -> Trust {
        Trust::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn trust_follows_the_endpoint_and_the_setting() {
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
        assert_eq!(
            trust(&[
                ("AWS_ENDPOINT_URL_DYNAMODB", "https://dynamodb.example"),
                ("AWS_ENDPOINT_URL", "http://localhost:8000"),
            ]),
            Trust::AmazonRoots
        );
        assert_eq!(
            trust(&[
                ("AWS_ENDPOINT_URL_DYNAMODB", "https://localstack.internal"),
                ("IM_DYNAMODB_TRUST", "system"),
            ]),
            Trust::System
        );
        assert_eq!(
            trust(&[
                ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
                ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
            ]),
            Trust::AmazonRoots
        );
        // The template's own variable wins, and is ignored while empty (as on AWS).
        assert_eq!(
            trust(&[
                ("IM_DYNAMODB_ENDPOINT", "http://172.17.0.1:8000"),
                ("AWS_ENDPOINT_URL_DYNAMODB", "https://dynamodb.example"),
            ]),
            Trust::Nothing
        );
        assert_eq!(
            trust(&[
                ("IM_DYNAMODB_ENDPOINT", ""),
                ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            ]),
            Trust::Nothing
        );
        assert_eq!(trust(&[("IM_DYNAMODB_ENDPOINT", "")]), Trust::AmazonRoots);
    }

    #[tokio::test]
    async fn every_trust_builds_a_client() {
        for t in [Trust::Nothing, Trust::AmazonRoots, Trust::System] {
            let _ = http_client(t);
        }
    }
}

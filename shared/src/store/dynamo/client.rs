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
//! On Lambda the SDK's configuration is built without `aws_config`'s loader
//! ([`config_from_lambda_env`]), and
//! [`DynamoStore::warm_up`](super::DynamoStore::warm_up) then opens the connection during
//! init, so the first request does not pay the TCP and TLS handshakes.

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Region, SharedHttpClient};

use crate::config::{DynamoBounds, DynamoTarget};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::Builder;

/// Amazon Root CA 1 to 4 and Starfield Services Root Certificate Authority - G2 (the
/// file names their source and fingerprints).
pub const AMAZON_ROOT_CAS: &[u8] = include_bytes!("../../../certs/amazon-root-cas.pem");

pub use crate::config::Trust;

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

/// The SDK's settings every client of the table shares: the time-outs and retries of
/// `bounds` (see [`DynamoBounds`] for why these).
fn timeouts(bounds: &DynamoBounds) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(bounds.connect_timeout)
        .operation_attempt_timeout(bounds.attempt_timeout)
        .operation_timeout(bounds.operation_timeout)
        .build()
}

fn retries(bounds: &DynamoBounds) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(bounds.max_attempts)
        .with_initial_backoff(DynamoBounds::INITIAL_BACKOFF)
}

/// `aws_config`'s loader with `bounds`: the default way, for every environment.
pub(super) fn loader(bounds: &DynamoBounds) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts(bounds))
        .retry_config(retries(bounds))
}

/// The client's configuration straight from the environment, when it holds what a Lambda
/// function's does: credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, with
/// `AWS_SESSION_TOKEN`) and the region (`AWS_REGION`, or `AWS_DEFAULT_REGION`). Lambda,
/// `sam local` and `cargo lambda` all set them. `None` otherwise: a developer's profile,
/// SSO or container credentials go through [`loader`].
///
/// Why not the loader here: its first run in a process reads the shared config files,
/// builds every provider of the default credentials chain (profile, SSO, web identity,
/// container, instance metadata) and resolves each setting from both the environment
/// and the profile, about 0.9 ms of a cold start on this project's bench machine, to
/// arrive at the same answers: the default chain asks the environment first for
/// credentials and for the region. What the environment can also say about the endpoint
/// is honoured: `target`'s endpoint (read with the SDK's precedence),
/// `AWS_USE_FIPS_ENDPOINT` and `AWS_USE_DUALSTACK_ENDPOINT`. Settings that only a profile
/// file can give (a profile's `endpoint_url` or `use_fips_endpoint`) are not read on this
/// path; a deployed function has no profile file.
pub fn config_from_lambda_env(
    target: &DynamoTarget,
    bounds: &DynamoBounds,
    http: SharedHttpClient,
    var: impl Fn(&str) -> Option<String>,
) -> Option<aws_sdk_dynamodb::Config> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    set("AWS_ACCESS_KEY_ID")?;
    set("AWS_SECRET_ACCESS_KEY")?;
    let region = set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION"))?;
    let flag = |name: &str| set(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        // Reads the variables when the first request is signed, as the default chain's
        // first provider does.
        .credentials_provider(EnvironmentVariableCredentialsProvider::new())
        .http_client(http)
        .timeout_config(timeouts(bounds))
        .retry_config(retries(bounds))
        .use_fips(flag("AWS_USE_FIPS_ENDPOINT"))
        .use_dual_stack(flag("AWS_USE_DUALSTACK_ENDPOINT"));
    if let Some(endpoint) = &target.endpoint {
        config = config.endpoint_url(endpoint);
    }
    Some(config.build())
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

    fn lambda_config(vars: &[(&str, &str)]) -> Option<aws_sdk_dynamodb::Config> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let target = DynamoTarget::from_lookup(&lookup).unwrap();
        let http = http_client(target.trust);
        config_from_lambda_env(&target, &DynamoBounds::default(), http, lookup)
    }

    /// Where a request made with `config` would go: the URI the SDK resolved for it,
    /// taken by an interceptor that then stops the request before it is sent. The
    /// environment's credentials provider reads the process's variables, not the test's,
    /// so the request is signed with test credentials.
    async fn resolved_uri(config: aws_sdk_dynamodb::Config) -> String {
        use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
        use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
        use aws_sdk_dynamodb::error::{BoxError, DisplayErrorContext};
        use std::sync::{Arc, Mutex};

        #[derive(Debug, Clone, Default)]
        struct Capture(Arc<Mutex<Option<String>>>);
        impl Intercept for Capture {
            fn name(&self) -> &'static str {
                "capture the request URI"
            }
            fn read_before_transmit(
                &self,
                context: &BeforeTransmitInterceptorContextRef<'_>,
                _: &RuntimeComponents,
                _: &mut ConfigBag,
            ) -> Result<(), BoxError> {
                *self.0.lock().unwrap() = Some(context.request().uri().to_owned());
                Err("stopped before sending".into())
            }
        }
        let capture = Capture::default();
        let client = aws_sdk_dynamodb::Client::from_conf(
            config
                .to_builder()
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
                .interceptor(capture.clone())
                .build(),
        );
        let err = client.list_tables().send().await.expect_err("stopped");
        let uri = capture.0.lock().unwrap().take();
        uri.unwrap_or_else(|| panic!("no request reached transmit: {}", DisplayErrorContext(&err)))
    }

    #[tokio::test]
    async fn the_loader_is_skipped_only_when_the_environment_has_it_all() {
        let creds = [
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ];
        // Lambda's environment: credentials and region, the regional endpoint, the
        // service's bounds.
        let lambda = lambda_config(&[creds[0], creds[1], ("AWS_REGION", "eu-west-1")]).unwrap();
        assert_eq!(lambda.region().map(|r| r.as_ref()), Some("eu-west-1"));
        let bounds = DynamoBounds::default();
        let t = lambda.timeout_config().unwrap();
        assert_eq!(t.connect_timeout(), Some(bounds.connect_timeout));
        assert_eq!(t.operation_attempt_timeout(), Some(bounds.attempt_timeout));
        assert_eq!(t.operation_timeout(), Some(bounds.operation_timeout));
        let retries = lambda.retry_config().unwrap();
        assert_eq!(retries.max_attempts(), bounds.max_attempts);
        assert_eq!(retries.initial_backoff(), DynamoBounds::INITIAL_BACKOFF);
        assert_eq!(
            resolved_uri(lambda).await,
            "https://dynamodb.eu-west-1.amazonaws.com/"
        );
        // The region's other variable, and the FIPS and dual-stack switches, as the SDK's
        // endpoint rules read them.
        let fips = lambda_config(&[
            creds[0],
            creds[1],
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_USE_FIPS_ENDPOINT", "true"),
        ])
        .unwrap();
        assert_eq!(
            resolved_uri(fips).await,
            "https://dynamodb-fips.us-east-1.amazonaws.com/"
        );
        let dual = lambda_config(&[
            creds[0],
            creds[1],
            ("AWS_REGION", "us-east-1"),
            ("AWS_USE_DUALSTACK_ENDPOINT", "TRUE"),
        ])
        .unwrap();
        assert_eq!(
            resolved_uri(dual).await,
            "https://dynamodb.us-east-1.api.aws/"
        );
        // An endpoint of the environment's (DynamoDB Local).
        let local = lambda_config(&[
            creds[0],
            creds[1],
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
        ])
        .unwrap();
        assert_eq!(resolved_uri(local).await, "http://127.0.0.1:8000/");
        // Anything missing: the SDK's loader and its whole default chain.
        assert!(lambda_config(&[creds[0], creds[1]]).is_none());
        assert!(lambda_config(&[creds[0], ("AWS_REGION", "eu-west-1")]).is_none());
        assert!(lambda_config(&[
            ("AWS_ACCESS_KEY_ID", ""),
            creds[1],
            ("AWS_REGION", "eu-west-1")
        ])
        .is_none());
    }

    #[tokio::test]
    async fn every_trust_builds_a_client() {
        for t in [Trust::Nothing, Trust::AmazonRoots, Trust::System] {
            let _ = http_client(t);
        }
    }
}

//! The warm CPU of the signature path (issue 11, item 4): what one warm request costs a
//! function once its store calls are answered from caches, next to HMAC-SHA1 alone; and
//! a Tencent UserSig's (issue 23), next to its floor, one HMAC-SHA256 and one zlib of the
//! same bytes.
//!
//! Each request goes through the router a function binary runs (`router_for`), as an
//! `http::Request` with a real HS256 bearer token, so the time covers routing and the
//! middleware, the `Caller` extractor (token header, key cache, signature and claims),
//! path validation, the policy decision, the master-key cache, timestamp, nonce and HMAC,
//! and the JSON body. Not covered: the Lambda runtime's event conversion and its HTTP
//! calls, and the access-log line (no log subscriber is installed here).
//!
//! The store is the real `DynamoStore` on DynamoDB Local (the project has no in-memory
//! DynamoDB), reached through the same environment the function binaries read:
//! `TABLE_NAME`, `AWS_ENDPOINT_URL_DYNAMODB` and the local AWS settings, as
//! `scripts/bench.sh` exports them. Every SDK call is counted, and each cached benchmark
//! fails if its measurement made one.
//!
//! A login reads only the two key caches, so the real store answers it warm. An invite on
//! a group's conversation also reads the conversation's link and the caller's standing,
//! which nothing caches today: for `invite`, [`WarmFacts`] remembers those two answers
//! after DynamoDB Local first gave them, so the time is CPU, not a round trip; and
//! `invite_on_dynamodb_local` runs the same request over the store as it is, round trips
//! included.
//!
//! Each benchmark runs twice: in `signature_path`, timed by the wall clock (criterion's
//! default), and in `signature_path_cpu`, by the CPU time of the benchmark's one thread
//! ([`ThreadCpu`]). On a machine whose cores other work shares, the wall clock also counts
//! the waits for a core; the CPU time is what the request itself used.

use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::body::Body;
use axum::Router;
use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use flate2::write::ZlibEncoder;
use flate2::Compression;
use hmac::{Hmac, Mac};
use http::{header, HeaderValue, Request, StatusCode};
use im_e2e::calls::Calls;
use im_shared::api::{router_for, AppState};
use im_shared::auth;
use im_shared::config::Config;
use im_shared::functions;
use im_shared::model::ids::member_order;
use im_shared::model::signing::{self, Operation};
use im_shared::model::usersig::{self, UserSigInput};
use im_shared::model::{
    AppKey, Caller, ConversationClaim, Created, GroupMeta, GroupPatch, GroupSpec, GroupStatus,
    Idempotency, MemberList, Page, Secret, TencentCloud, TencentKey, TencentSpec, TokenKey,
};
use im_shared::store::{
    CloudStateStore, ConversationStore, DynamoStore, GroupStore, KeyStore, MemberStore, StoreError,
};
use mini_moka::sync::Cache;
use sha2::Sha256;
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// The real store, remembering the answers to the two questions an invite asks it beyond
/// the keys (which group a conversation is, and the caller's standing in that group)
/// once DynamoDB Local has given them. It stands for a cache like the key caches,
/// confined to this benchmark: the facts are DynamoDB Local's own, read through the SDK,
/// and every other call goes to the store unchanged.
struct WarmFacts {
    store: DynamoStore,
    links: Cache<String, Option<ConversationClaim>>,
    standings: Cache<String, GroupStatus>,
}

impl WarmFacts {
    fn new(store: DynamoStore) -> Self {
        Self {
            store,
            links: Cache::new(1_000),
            standings: Cache::new(1_000),
        }
    }
}

#[async_trait]
impl ConversationStore for WarmFacts {
    async fn conversation_group(
        &self,
        app_id: &str,
        conversation_id: &str,
    ) -> Result<Option<ConversationClaim>, StoreError> {
        let key = format!("{app_id}\n{conversation_id}");
        if let Some(hit) = self.links.get(&key) {
            return Ok(hit);
        }
        let found = self
            .store
            .conversation_group(app_id, conversation_id)
            .await?;
        self.links.insert(key, found);
        Ok(found)
    }

    async fn standing(
        &self,
        app_id: &str,
        group_id: u64,
        client_id: &str,
        named: &[&str],
    ) -> Result<GroupStatus, StoreError> {
        let key = format!("{app_id}\n{group_id}\n{client_id}\n{}", named.join(":"));
        if let Some(hit) = self.standings.get(&key) {
            return Ok(hit);
        }
        let found = self
            .store
            .standing(app_id, group_id, client_id, named)
            .await?;
        self.standings.insert(key, found.clone());
        Ok(found)
    }
}

#[async_trait]
impl KeyStore for WarmFacts {
    async fn master_key(&self, app_id: &str) -> Result<Option<AppKey>, StoreError> {
        self.store.master_key(app_id).await
    }

    async fn token_key(&self, kid: &str) -> Result<Option<TokenKey>, StoreError> {
        self.store.token_key(kid).await
    }

    async fn reserved_ids(
        &self,
        app_id: &str,
    ) -> Result<im_shared::model::ReservedIds, StoreError> {
        self.store.reserved_ids(app_id).await
    }
    async fn tencent_key(&self, app_id: &str) -> Result<Option<TencentKey>, StoreError> {
        self.store.tencent_key(app_id).await
    }
}

#[async_trait]
impl CloudStateStore for WarmFacts {
    async fn mark_cloud_failed(
        &self,
        app_id: &str,
        group_id: u64,
        cloud: im_shared::model::CloudId,
        why: &str,
    ) -> Result<bool, StoreError> {
        self.store
            .mark_cloud_failed(app_id, group_id, cloud, why)
            .await
    }
}

#[async_trait]
impl GroupStore for WarmFacts {
    async fn create_group(
        &self,
        caller: &Caller,
        spec: &GroupSpec,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError> {
        self.store.create_group(caller, spec, idempotency).await
    }

    async fn update_group(
        &self,
        caller: &Caller,
        group_id: u64,
        patch: &GroupPatch,
        if_match: Option<&[u64]>,
    ) -> Result<GroupMeta, StoreError> {
        self.store
            .update_group(caller, group_id, patch, if_match)
            .await
    }

    async fn delete_group(
        &self,
        caller: &Caller,
        group_id: u64,
        if_match: Option<&[u64]>,
    ) -> Result<(), StoreError> {
        self.store.delete_group(caller, group_id, if_match).await
    }

    async fn transfer_owner(
        &self,
        caller: &Caller,
        group_id: u64,
        new_owner: &str,
    ) -> Result<GroupMeta, StoreError> {
        self.store.transfer_owner(caller, group_id, new_owner).await
    }

    async fn group_for(&self, caller: &Caller, group_id: u64) -> Result<GroupMeta, StoreError> {
        self.store.group_for(caller, group_id).await
    }
}

#[async_trait]
impl MemberStore for WarmFacts {
    async fn add_members(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
    ) -> Result<(), StoreError> {
        self.store.add_members(caller, group_id, members).await
    }

    async fn remove_members(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
    ) -> Result<(), StoreError> {
        self.store.remove_members(caller, group_id, members).await
    }

    async fn set_admins(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
        grant: Option<usize>,
    ) -> Result<(), StoreError> {
        self.store
            .set_admins(caller, group_id, members, grant)
            .await
    }

    async fn members_page(
        &self,
        caller: &Caller,
        group_id: u64,
        limit: u32,
        after: Option<&str>,
    ) -> Result<(GroupMeta, Page<(String, String), String>), StoreError> {
        self.store
            .members_page(caller, group_id, limit, after)
            .await
    }

    async fn client_groups(
        &self,
        caller: &Caller,
        client_id: &str,
        limit: u32,
        after: Option<u64>,
    ) -> Result<Page<GroupMeta, u64>, StoreError> {
        self.store
            .client_groups(caller, client_id, limit, after)
            .await
    }
}

/// An app of its own in the table, with a token key, and a group whose linked
/// conversation the invite acts on.
struct Fixture {
    app_id: String,
    master_key: Secret,
    tencent_key: Secret,
    bearer: HeaderValue,
    outsider_bearer: HeaderValue,
    conversation_id: &'static str,
}

const CLIENT: &str = "alice";
const SDK_APP_ID: u64 = 1_400_000_000;
const INVITED: &str = "carol:dave";
const OUTSIDER: &str = "mallory";

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{prefix}-{nanos}")
}

fn random_secret() -> Secret {
    Secret::new(signing::nonce().repeat(5))
}

fn need(name: &str) {
    if std::env::var_os(name).is_none() {
        panic!(
            "{name} is not set. This benchmark runs on DynamoDB Local: run `make bench`, or \
             export what scripts/bench.sh exports (TABLE_NAME of a table made with \
             `im-admin table create`, AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION and the local \
             AWS credentials)"
        );
    }
}

async fn fixture(store: &DynamoStore) -> Fixture {
    let app_id = unique("bench-app");
    let master_key = random_secret();
    let kid = unique("bench-kid");
    let token_secret = random_secret();
    store
        .create_app(&app_id, &master_key)
        .await
        .expect("register the benchmark's app");
    store
        .create_token_key(&kid, &app_id, &token_secret)
        .await
        .expect("register its token key");
    let mut spec = TencentSpec::new("https://adminapisgp.im.qcloud.com", SDK_APP_ID, "im-admin");
    // UserSigs only: the local server's stream must not mirror the group into Tencent.
    spec.mirroring = false;
    let tencent = TencentCloud::new(spec).expect("Tencent settings");
    let tencent_key = random_secret();
    store
        .set_tencent(&app_id, &tencent, Some(&tencent_key))
        .await
        .expect("give the app Tencent settings");
    let conversation_id = "bench-conversation";
    let backend = Caller {
        app_id: app_id.clone(),
        client_id: "owner".into(),
        app_admin: true,
    };
    let spec = GroupSpec {
        name: "bench".into(),
        // The invited are members already: an invite on a group's conversation is signed
        // only for ids the group holds (the client adds them through the group route first).
        members: MemberList::parse_joined("members", &format!("{CLIENT}:bob:{INVITED}"), 10, 64)
            .expect("member list"),
        avatar_url: None,
        description: None,
        conversation_id: Some(conversation_id.into()),
        max_members: 100,
    };
    store
        .create_group(&backend, &spec, None)
        .await
        .expect("create the benchmark's group");
    let bearer = |sub: &str| {
        let token = auth::mint(&kid, &token_secret, &auth::claims_for(sub, false, 3600))
            .expect("mint a token");
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header value")
    };
    Fixture {
        bearer: bearer(CLIENT),
        outsider_bearer: bearer(OUTSIDER),
        app_id,
        master_key,
        tencent_key,
        conversation_id,
    }
}

/// One request through `router`, its body read to the end as the Lambda adapter does.
async fn request(router: &Router, uri: &str, bearer: &HeaderValue) -> StatusCode {
    let req = Request::get(uri)
        .header(header::AUTHORIZATION, bearer.clone())
        .body(Body::empty())
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    black_box(body);
    status
}

/// CPU time of the calling thread. With a current-thread runtime every task of a request,
/// the SDK's connections included, runs on it, so this is the request's own CPU: other
/// work on the machine still slows it through shared caches, but the waits for a core,
/// which wall time counts, are left out.
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        ThreadTime::now().as_duration()
    }

    fn end(&self, started: Duration) -> Duration {
        ThreadTime::now().as_duration() - started
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanoseconds
    }
}

/// Criterion's own duration formatter is private; this one scales the same way.
struct Nanoseconds;

impl ValueFormatter for Nanoseconds {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e-3, "µs"),
            t if t < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match *throughput {
            Throughput::Bits(n)
            | Throughput::Bytes(n)
            | Throughput::BytesDecimal(n)
            | Throughput::Elements(n)
            | Throughput::ElementsAndBytes { elements: n, .. } => n as f64,
        };
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v);
        "per CPU-second"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// What every request of the benchmark shares.
struct Harness<'a> {
    rt: &'a Runtime,
    calls: &'a Calls,
    bearer: &'a HeaderValue,
    group: &'static str,
}

impl Harness<'_> {
    /// Measures `uri` through `router` and reports the DynamoDB calls its requests made;
    /// fails unless that is `per_request` for each of them.
    fn measure<M: Measurement>(
        &self,
        c: &mut Criterion<M>,
        name: &str,
        router: &Router,
        uri: &str,
        per_request: u64,
    ) {
        // The first request fills whatever cache it reads, so the measurement sees them warm.
        let first = self.rt.block_on(request(router, uri, self.bearer));
        assert_eq!(first, StatusCode::OK, "{name}");
        let requests = AtomicU64::new(0);
        // Forget the calls of the first request.
        self.calls.take();
        let mut group = c.benchmark_group(self.group);
        if per_request > 0 {
            // Round trips take milliseconds: a few dozen samples fit the measurement time.
            group.sampling_mode(SamplingMode::Flat).sample_size(20);
        }
        group.bench_function(name, |b| {
            b.to_async(self.rt).iter(|| async {
                requests.fetch_add(1, Ordering::Relaxed);
                let status = request(router, uri, self.bearer).await;
                debug_assert_eq!(status, StatusCode::OK);
            })
        });
        group.finish();
        // Every attempt is counted, so a retry shows as an extra call.
        let (made, requests) = (self.calls.take().len() as u64, requests.into_inner());
        println!(
            "dynamodb calls: {}/{name}: {made} over {requests} requests",
            self.group
        );
        assert_eq!(
            made,
            per_request * requests,
            "{name}: expected {per_request} DynamoDB calls per request (a cached key or link \
             that expires during a long measurement costs one more: keep the run shorter \
             than IM_LINK_CACHE_SECONDS)"
        );
    }
}

/// Every benchmark, in the criterion group `group`, timed by `c`'s measurement.
fn signature_path<M: Measurement>(c: &mut Criterion<M>, group: &'static str) {
    for name in ["TABLE_NAME", "AWS_ENDPOINT_URL_DYNAMODB"] {
        need(name);
    }
    // One thread: a Lambda sandbox serves one request at a time.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let calls = Calls::default();
    let config = Config::from_env().expect("configuration from the environment");
    let store = rt.block_on(async {
        let client = DynamoStore::client_for(&config.dynamodb_target, &config.dynamodb).await;
        let counted = client
            .config()
            .to_builder()
            .interceptor(calls.clone())
            .build();
        DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(counted),
            config.table_name.clone(),
        )
    });
    let fx = rt.block_on(fixture(&store));

    let message = signing::message(
        &fx.app_id,
        CLIENT,
        &Operation::Login,
        "1700000000",
        "n0nce123",
    );
    let mut hmac = c.benchmark_group(group);
    hmac.bench_function("hmac_sha1_alone", |b| {
        b.iter(|| signing::hmac_sha1_hex(&fx.master_key, black_box(&message)))
    });
    // The UserSig's floor: one HMAC-SHA256 over the text it signs, and one zlib of the
    // JSON object it carries, the same bytes as `usersig::user_sig` makes for alice now.
    let usersig_input = UserSigInput {
        sdk_app_id: SDK_APP_ID,
        identifier: CLIENT,
        time: 1_700_000_000,
        expire: 86_400,
    };
    let signed_text = format!(
        "TLS.identifier:{CLIENT}\nTLS.sdkappid:{SDK_APP_ID}\nTLS.time:1700000000\nTLS.expire:86400\n"
    );
    let object = serde_json::json!({
        "TLS.ver": "2.0",
        "TLS.identifier": CLIENT,
        "TLS.sdkappid": SDK_APP_ID,
        "TLS.expire": 86_400,
        "TLS.time": 1_700_000_000,
        "TLS.sig": usersig::tls_sig(&fx.tencent_key, &usersig_input),
    })
    .to_string();
    hmac.bench_function("hmac_sha256_and_zlib_alone", |b| {
        b.iter(|| {
            let mut mac = Hmac::<Sha256>::new_from_slice(fx.tencent_key.expose().as_bytes())
                .expect("HMAC takes any key");
            mac.update(black_box(signed_text.as_bytes()));
            black_box(mac.finalize().into_bytes());
            let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
            zlib.write_all(black_box(object.as_bytes()))
                .expect("compressing into memory");
            black_box(zlib.finish().expect("compressing into memory"))
        })
    });
    hmac.bench_function("user_sig_alone", |b| {
        b.iter(|| usersig::user_sig(&fx.tencent_key, black_box(&usersig_input)))
    });
    // The member order signatures use (UTF-16 code units, as the vendors' SDKs sort)
    // against plain byte order, on a shuffled 100-id list (the most a signature takes)
    // mixing ASCII, CJK, ids outside the BMP and halfwidth forms: what the SDKs' order
    // costs a signature over the byte order it replaced.
    let ids: Vec<String> = (0..100u32)
        .map(|i| (i * 37) % 100)
        .map(|i| match i % 4 {
            0 => format!("user{i}"),
            1 => format!("李{i}"),
            2 => format!("𠮷{i}"),
            _ => format!("ｹ{i}"),
        })
        .collect();
    hmac.bench_function("sort_100_ids_sdk_order", |b| {
        b.iter_batched(
            || ids.clone(),
            |mut v| {
                v.sort_by(|a, b| member_order(a, b));
                v
            },
            BatchSize::SmallInput,
        )
    });
    hmac.bench_function("sort_100_ids_byte_order", |b| {
        b.iter_batched(
            || ids.clone(),
            |mut v| {
                v.sort();
                v
            },
            BatchSize::SmallInput,
        )
    });
    // What a signature route does with the list it is given: `MemberList::parse_joined`
    // (each id checked, duplicates removed, the protocol's order). On the mixed list it
    // re-sorts by `member_order`; on one without both kinds of lead (no halfwidth or
    // private-use character beside the ids outside the BMP) the set's byte order already
    // is the protocol's and no re-sort runs.
    let mixed = ids.join(":");
    let plain = ids
        .iter()
        .map(|id| id.replace('ｹ', "k"))
        .collect::<Vec<_>>()
        .join(":");
    for (name, joined) in [
        ("normal_form_100_ids_mixed", &mixed),
        ("normal_form_100_ids_no_resort", &plain),
    ] {
        hmac.bench_function(name, |b| {
            b.iter(|| MemberList::parse_joined("m", black_box(joined), 100, 64).expect("valid"))
        });
    }
    hmac.finish();

    let harness = Harness {
        rt: &rt,
        calls: &calls,
        bearer: &fx.bearer,
        group,
    };
    let real = AppState::new(config.clone(), Arc::new(store.clone()));
    let login = format!("/signature/login/{}/{CLIENT}", fx.app_id);
    let router = router_for::<functions::LoginSignature>(real.clone());
    harness.measure(c, "login", &router, &login, 0);

    // The Tencent key from its cache (read by the first request), as the master key is.
    let usersig = format!("/signature/usersig/{}/{CLIENT}", fx.app_id);
    let router = router_for::<functions::UsersigSignature>(real.clone());
    harness.measure(c, "usersig", &router, &usersig, 0);

    let invite = format!(
        "/signature/invite/{}/{CLIENT}/{}/{INVITED}",
        fx.app_id, fx.conversation_id
    );
    let warm = AppState::new(config, Arc::new(WarmFacts::new(store)));
    let router = router_for::<functions::InviteSignature>(warm);
    // The decision is made on the group's facts, not waved through: a client outside the
    // group is refused on the same router.
    let outsider = format!(
        "/signature/invite/{}/{OUTSIDER}/{}/{INVITED}",
        fx.app_id, fx.conversation_id
    );
    let refused = rt.block_on(request(&router, &outsider, &fx.outsider_bearer));
    assert_eq!(refused, StatusCode::FORBIDDEN, "an outsider's invite");
    harness.measure(c, "invite", &router, &invite, 0);

    // The link from the link cache (read by the first request), then the group and
    // membership BatchGetItem every time.
    let router = router_for::<functions::InviteSignature>(real);
    harness.measure(c, "invite_on_dynamodb_local", &router, &invite, 1);
}

fn wall_time(c: &mut Criterion) {
    signature_path(c, "signature_path");
}

fn thread_cpu(c: &mut Criterion<ThreadCpu>) {
    signature_path(c, "signature_path_cpu");
}

criterion_group!(wall, wall_time);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = thread_cpu
}
criterion_main!(wall, cpu);

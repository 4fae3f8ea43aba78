#!/usr/bin/env bash
# `make bench`: measures and rewrites BENCHMARKS.md. Sizes are of the arm64 release
# binaries that `sam build` ships; timings run the x86_64 release build on this machine,
# against DynamoDB Local, so they compare builds of this project, not AWS's hardware.
# Services start and stop through scripts/lib.sh, as in test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
svc_init bench

echo "== release builds"
# The functions come from the route list (shared/src/api/routes.rs), through im-bench.
cargo build --release --quiet -p im-bench
mapfile -t functions < <(target/release/im-bench functions)
mapfile -t route_functions < <(target/release/im-bench functions --routes-only)
pkg_args=(); for f in "${functions[@]}"; do pkg_args+=(-p "$f"); done
# The two floors (bench/floor-*, not shipped): for the start-up table, and in the same arm64
# build as the functions so that the size table compares like with like.
floors=(floor-bare floor-sdk)
floor_args=(); for f in "${floors[@]}"; do floor_args+=(-p "$f"); done
cargo lambda build --release --arm64 "${pkg_args[@]}" "${floor_args[@]}" 2>&1 | tail -n 1
# x86_64 builds of every function and of the floors, for the start-up table.
cargo build --release --quiet -p im-local -p im-admin -p im-bench "${pkg_args[@]}" "${floor_args[@]}"
# The bench profile is the release profile, so this reuses the release builds above.
cargo bench --quiet --no-run -p im-bench --bench signature_path
# The runs below use a copy of im-bench: its import spawns itself (current_exe), and a
# cargo build during the hour this takes must not swap the binary under a run.
bench_bin="$work/im-bench"
cp target/release/im-bench "$bench_bin"

echo "== sizes"
sizes="$work/sizes.md"
{
  echo "| binary | bootstrap (arm64, stripped) | ÷ DynamoDB floor | zipped (deflate -9) |"
  echo "| --- | ---: | ---: | ---: |"
  for f in "${floors[@]}" "${functions[@]}"; do
    python3 - "$f" "target/lambda/$f/bootstrap" target/lambda/floor-sdk/bootstrap <<'PY'
import io, os, sys, zipfile
name, path, floor = sys.argv[1], sys.argv[2], sys.argv[3]
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    zf.write(path, "bootstrap")
size, zipped = os.path.getsize(path), len(buf.getvalue())
print(f"| {name} | {size} bytes ({size / 2**20:.1f} MiB) | {size / os.path.getsize(floor):.2f} | {zipped} bytes ({zipped / 2**20:.1f} MiB) |")
PY
  done
} >"$sizes"
cat "$sizes"

echo "== local server (release) on DynamoDB Local in memory"
start_local_server target/release/im-local RUST_LOG=warn
# Its process id: the mirror step reads its CPU time.
local_pid=${pids[-1]}
local_aws_env "$ddb_url"
export TABLE_NAME=im-local
head -c 24 /dev/urandom | base64 | target/release/im-admin app add demo-app >/dev/null
# The events carry a token signed with the fixture secret (events/README.md).
target/release/im-admin token-key add events-fixture --app demo-app --key-file events/fixture-token-secret >/dev/null
# Tencent settings for the UserSig event, with a key of its own (mirroring off: nothing
# here may call Tencent).
head -c 32 /dev/urandom | base64 | target/release/im-admin app im-cloud set demo-app --provider tencent \
  --server https://adminapisgp.im.qcloud.com --sdk-app-id 1400000001 --admin-identifier im-admin \
  --mirroring off --key-file - >/dev/null
# Callers of the local server authenticate like any other: a token for alice.
export IM_BENCH_TOKEN; IM_BENCH_TOKEN=$(target/release/im-admin token mint --kid dev --sub alice)

echo "== warm CPU of the signature path (criterion)"
# The benchmark registers its own app in this table. Short runs keep make bench's time
# reasonable and stay well inside the key caches' minute.
criterion_args=(--warm-up-time 1 --measurement-time 5 --noplot)
load_before=$(uptime | sed 's/.*load average: //')
CRITERION_HOME="$work/criterion" cargo bench --quiet -p im-bench --bench signature_path -- "${criterion_args[@]}" | tee "$work/criterion.log"
load_after=$(uptime | sed 's/.*load average: //')
cpu_rows=$(python3 - "$work/criterion" <<'PY'
import json, sys
what = {
    "hmac_sha1_alone": "HMAC-SHA1 of a login message with the master key, hex-encoded",
    "login": "a login signature through the login function's router, both keys from the caches",
    "hmac_sha256_and_zlib_alone": "a UserSig's floor: HMAC-SHA256 of its signed text with the Tencent key, and zlib of its JSON object (the same bytes)",
    "user_sig_alone": "`usersig::user_sig` alone: that HMAC, the JSON, zlib and Tencent's base64",
    "sort_100_ids_sdk_order": "100 member ids (ASCII, CJK, outside the BMP, halfwidth; shuffled) sorted in the order signatures use: UTF-16 code units, as the vendors' SDKs sort (`ids::member_order`)",
    "sort_100_ids_byte_order": "the same 100 ids sorted by bytes, the order signatures used before",
    "normal_form_100_ids_mixed": "`MemberList::parse_joined` of those 100 ids joined by colons, as a signature route takes them: each id checked, duplicates removed, the SDKs' order (a re-sort: the list mixes ids outside the BMP with halfwidth ones)",
    "normal_form_100_ids_no_resort": "the same with the halfwidth character replaced by `k`: the set's byte order is already the SDKs' order, so no re-sort runs",
    "usersig": "a UserSig through the usersig function's router, the token key and the Tencent key from the caches",
    "invite": "an invite on a group's linked conversation through the invite function's router, keys from the caches, the link and the caller's standing from `WarmFacts`",
    "invite_on_dynamodb_local": "the same invite on the service as it is: the link from its cache, the caller's standing by a BatchGetItem on DynamoDB Local each time",
}
def show(ns):
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns / 1e6:.2f} ms"
def median(group, name):
    with open(f"{sys.argv[1]}/{group}/{name}/new/estimates.json") as f:
        return show(json.load(f)["median"]["point_estimate"])
def fastest_tenth(group, name):
    # Criterion's raw samples: each a number of iterations and their total time.
    with open(f"{sys.argv[1]}/{group}/{name}/new/sample.json") as f:
        sample = json.load(f)
    per = sorted(t / n for t, n in zip(sample["times"], sample["iters"]))
    return show(per[len(per) // 10])
for name, text in what.items():
    cpu = "signature_path_cpu"
    print(f"| `{name}` | {text} | {median(cpu, name)} | {fastest_tenth(cpu, name)} | {median('signature_path', name)} |")
PY
)
cpu_calls=$(sed -n 's/^dynamodb calls: //p' "$work/criterion.log")

echo "== function start-up"
# The floors, then the route functions in the route list's order (create-group makes group
# 1, which the later group events name); each binary is started 30 times. The stream
# function (sync-conversations, no HTTP event) is left out.
startup_load=$(uptime | sed 's/.*load average: //')
startup_order=(floor-bare floor-sdk "${route_functions[@]}" login-signature+warm-up)
startup_json="$work/startup.jsonl"
: >"$startup_json"
for entry in "${startup_order[@]}"; do
  f=${entry%+warm-up}
  # login-signature+warm-up: opening the connection at init, as over TLS on AWS.
  warm=tls; [ "$entry" != "$f" ] && warm=always
  event=events/$f.json
  case $f in floor-*) event=events/health.json ;; esac
  invocations=1
  [ "$entry" = login-signature ] && invocations=5000
  line=$(IM_DYNAMODB_WARM_UP=$warm "$bench_bin" startup --binary "target/release/$f" --event "$event" --runs 30 --invocations "$invocations" --json)
  echo "$entry $line" | tee -a "$startup_json"
done
startup_load_after=$(uptime | sed 's/.*load average: //')
startup=$(python3 - "$startup_json" <<'PY'
import json, sys
rows = []
for line in open(sys.argv[1]):
    name, data = line.split(" ", 1)
    rows.append((name, json.loads(data)))
bare = dict(rows)["floor-bare"]["startup_ms"]["p50"]
what = {"floor-bare": "floor: bare `lambda_http` handler", "floor-sdk": "floor: + `aws_config::load_from_env()` and a DynamoDB client", "login-signature+warm-up": "login-signature, `IM_DYNAMODB_WARM_UP=always`"}
print("| binary | start-up p50 | p90 | p50 ÷ bare floor | first invocation p50 | p90 | answers |")
print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
for name, d in rows:
    s, f = d["startup_ms"], d["first_invocation_ms"]
    answers = ", ".join(f"{n}× {code}" for code, n in d["statuses"].items())
    print(f"| {what.get(name, name)} | {s['p50']:.2f} ms | {s['p90']:.2f} ms | {s['p50'] / bare:.1f}× | {f['p50']:.2f} ms | {f['p90']:.2f} ms | {answers} |")
w = dict(rows)["login-signature"]["warm"]
print()
print(f"login-signature, warm invocations after its last start: {w['count']}, p50 {w['p50_ms']:.3f} ms, p99 {w['p99_ms']:.3f} ms; peak RSS after them: {w['peak_rss_kib']} KiB")
PY
)
echo "$startup"

echo "== HTTP load"
login=$("$bench_bin" load --url "$http_url/signature/login/dev-app/alice" --connections 16 --seconds 10)
echo "login: $login"
group=$(curl -s -X POST "$http_url/im/group" -H "Authorization: Bearer $IM_BENCH_TOKEN" -H 'content-type: application/json' -d '{"group_name":"bench","member_client_ids":"owner","max_members":5000}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["group_id"])')
# Each request adds a new member; the group's limit (5000) caps how long this can run.
add=$("$bench_bin" load --url "$http_url/im/group/$group/member" --method POST --body '{"member_client_ids":"member-{n}"}' --expect 201 --connections 16 --seconds 8)
echo "add-member: $add"

echo "== Tencent callbacks"
callback_load=$(uptime | sed 's/.*load average: //')
callbacks=$("$bench_bin" callback --url "$http_url" --calls 500)
echo "$callbacks"

echo "== group mirroring"
# The machine is shared: the load average says how busy it was around these figures.
mirror_load=$(uptime | sed 's/.*load average/load average/')
mirror=$("$bench_bin" mirror --url "$http_url" --writes 300 --pid "$local_pid")
echo "$mirror"
echo "($mirror_load when it started)"

echo "== import and export"
import_load=$(uptime | sed 's/.*load average: //')
# DynamoDB Local under a 100k-item import and scan at times takes seconds to answer; the
# import and export get the bounds make test gives its admin commands.
import=$(IM_DYNAMODB_ATTEMPT_TIMEOUT_MS=10000 IM_DYNAMODB_OPERATION_TIMEOUT_MS=30000 "$bench_bin" import --work "$work/import" --conversations 10000 --conversations 100000)
echo "$import"

cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
# The whole file is this run's: one-off measurements and the choices they decided are
# decision records in docs/decisions/, which a run leaves alone.
cat >BENCHMARKS.md <<MD
# Benchmarks

Measured by \`make bench\` (scripts/bench.sh), which rewrites this file. Last run:
$(date -u +%Y-%m-%d), on ${cpu:-an unknown CPU}, $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB,
$(rustc --version), DynamoDB Local 3.3.1 on $(java -version 2>&1 | head -n1).

The load generator, the server and DynamoDB Local share the same two cores, so the
throughput figures are a floor for this code, not a forecast for AWS (where DynamoDB is a
remote service and each Lambda sandbox serves one request at a time).

The choices behind these figures, and the one-off measurements that decided them (one
handler per binary, no LTO, opt-level 3, the compiled-in Amazon roots, init without the
SDK's loader, how the warm CPU is read), are decision records in
[docs/decisions/](docs/decisions/README.md), which a run leaves alone.

## Size of each release \`bootstrap\`

Command: \`cargo lambda build --release --arm64 -p <function>... -p floor-bare -p floor-sdk\`
(the functions as \`sam build\` builds them, in one build, and in the same build the two
start-up floors of the start-up section below), release profile in Cargo.toml (no LTO, one codegen unit, stripped; why:
[docs/decisions/0003](docs/decisions/0003-one-build-without-lto.md) and
[0008](docs/decisions/0008-opt-level-3.md)). "÷ DynamoDB
floor" is the size over floor-sdk's, the \`lambda_http\` handler that makes a DynamoDB
client the default way; goal (issue 11): at most 1.25.

$(cat "$sizes")

## Warm CPU of the signature path

Command: \`cargo bench -p im-bench --bench signature_path -- ${criterion_args[*]}\`
(criterion 0.8; the bench profile is the release profile above, built for x86_64; one
tokio thread). Load average (\`uptime\`: 1, 5, 15 minutes) before the run: $load_before;
after it: $load_after. Other work shares these two cores, so the figures are what this
code costs under that load, not on an idle core.

Each request (\`bench/benches/signature_path.rs\`) is an \`http::Request\` with a bearer
token (HS256) sent to the router a function binary runs (\`router_for\`), its body read
to the end: routing and middleware, the caller's token (header, key from the cache,
signature and claims), path validation, the authorization decision
(\`model::policy::judge\`), the master key from the cache, timestamp, nonce, HMAC, and the
JSON body. Not included: the Lambda runtime's event conversion and its HTTP calls (the
warm invocations of the start-up section below include them), and the access-log line
(no log subscriber is installed). The store is the real \`DynamoStore\` on DynamoDB Local,
warmed by one request before measuring. Goal (issue 11): at most 20 µs per request.

Each benchmark runs twice, timed two ways: by the CPU time of the benchmark's one thread
(criterion group \`signature_path_cpu\`; every task of a request, the SDK's included, runs
on that thread), which other work on the machine changes far less (it still slows a
request through shared caches); and by the wall clock (group \`signature_path\`), which
also counts the waits for a core while the machine is loaded. Criterion's full estimates
(mean, intervals, outliers) are in its output, and under \`target/criterion\` when run by
hand.

This machine is a virtual machine whose speed changes in phases of a few seconds, which
nothing inside it shows (no steal time, no other process busy): the same login request,
in criterion's 100 samples in the order they ran, cost about 12 µs of CPU for some seconds
and about 22 µs for the next, back and forth, within one run; HMAC alone moves the same
way (0.42 to 0.62 µs between runs). So the median CPU time lands wherever a run's seconds
fell, and moves by up to 1.8× between runs of the same binary. The "fastest tenth" column
(the 10th percentile of the samples' time per iteration) is what a request costs while the
machine runs at full speed: the figure that compares builds of this code (the runs that
show it: [docs/decisions/0009](docs/decisions/0009-reading-warm-cpu.md)).

| benchmark | one iteration | CPU time, median | CPU time, fastest tenth | wall time, median |
| --- | --- | ---: | ---: | ---: |
$cpu_rows

A UserSig (\`GET /signature/usersig\`) takes the same path with the Tencent key in
place of the master key, and signs with HMAC-SHA256 over a fixed text, then compresses a
small JSON object with zlib and base64-encodes it (\`model::usersig\`). Its floor,
\`hmac_sha256_and_zlib_alone\`, is one HMAC-SHA256 and one zlib of the same bytes:
\`usersig\` minus that floor is what routing, the token, the caches and the JSON body
cost, as \`login\` minus \`hmac_sha1_alone\` is for a login.

Member lists are signed in the vendors' SDK order, by UTF-16 code units (issue 25):
\`sort_100_ids_sdk_order\` against \`sort_100_ids_byte_order\` is what that order costs
over the byte order it replaced, on the longest list a signature takes; next to
\`invite\`, a whole request, it is the part of a signature the order can move. A route
sorts only a list that mixes ids outside the BMP with ids in U+E000-U+FFFF (the only case
where the two orders differ): \`normal_form_100_ids_no_resort\` is what any other list
costs, \`normal_form_100_ids_mixed\` what such a list costs.

DynamoDB calls made while measuring (counted by an SDK interceptor; the benchmark fails
if a cached path makes any):

\`\`\`
$cpu_calls
\`\`\`

An invite on a group's conversation reads the conversation's link (cached for
\`IM_LINK_CACHE_SECONDS\`) and the caller's standing in the group (never cached: a
removed member loses its signatures at once). \`WarmFacts\`, a \`Store\` that
exists only in this benchmark, holds the answers DynamoDB Local gave to those two reads
(through the SDK, on the first request) and passes every other call to the real store. It
is a cache in front of DynamoDB Local, not a stand-in for it: it makes \`invite\` the CPU
of the path without its round trips. What a warm invite costs today is
\`invite_on_dynamodb_local\`.

## Start-up of each function binary

Command, for each binary: \`target/release/im-bench startup --binary target/release/<binary> --event events/<binary>.json --runs 30 --invocations 1 --json\`
(\`--invocations 5000\` for login-signature; the floors get \`events/health.json\`),
x86_64 release builds (the release profile above), a stand-in Lambda Runtime API on loopback,
the table on DynamoDB Local over http, each event with a bearer token the function verifies.
Load average before: $startup_load; after: $startup_load_after.

"Start-up" is the time from process start until the runtime asks for its first event (the
init phase: for a function, its configuration and the DynamoDB client). Over TLS (AWS) init
also opens the connection with one GetItem (bounded at 1.5 s;
[docs/decisions/0004](docs/decisions/0004-amazon-root-cas-and-warm-up.md)); to DynamoDB Local over http
it does not (a loopback connection costs nothing to open), except in the last row, which
forces it (\`IM_DYNAMODB_WARM_UP=always\`) to show what that round trip adds to init here. The floors are two tiny crates
under \`bench/\` that are not shipped: a bare \`lambda_http\` handler, and one that makes its
DynamoDB client the default way at init (its handler then makes one GetItem). "First
invocation" is the first event's round trip after start-up (for a function: reading the
token secret and the master key or the group, over the connection opened at init). The same
event is replayed in each of the 30 runs, so a group event may find its work done (409) or
no longer allowed (403): the answers column counts them.

$startup

## Requests per second through the local server

The local server runs the same router and handlers as the functions (release build,
\`RUST_LOG=warn\`), 16 keep-alive connections, 10 s each, every request with a bearer
token (\`IM_BENCH_TOKEN\`, minted for alice) that the server verifies.

Login signature, command: \`im-bench load --url \$URL/signature/login/dev-app/alice --connections 16 --seconds 10\`

\`\`\`
$login
\`\`\`

Add member (one DynamoDB transaction whose conditions keep the count and the limit
exact, with a read only when DynamoDB refuses it; a new member each time, into a group
with \`max_members\` 5000), command:
\`im-bench load --url \$URL/im/group/\$GROUP/member --method POST --body '{"member_client_ids":"member-{n}"}' --expect 201 --connections 16 --seconds 8\`

\`\`\`
$add
\`\`\`

## Tencent callbacks: the endpoint's answer time

Command: \`im-bench callback --url \$URL --calls 500\` (with \`AWS_ENDPOINT_URL_DYNAMODB\`
and \`TABLE_NAME\` of the same im-local; load average when it started: $callback_load).
Each call is signed as Tencent signs it and sent one at a time to
\`POST /im-cloud/tencent/callback/{app_id}\` on im-local (release, DynamoDB Local in
memory), timed from sending until the answer's body is read; the app's settings are in
im-local's caches (warmed by one call of each kind). Tencent waits 2 s, then lets the
event proceed: the goal is well under that.

| call | calls | p50 | p99 | slowest |
| --- | ---: | ---: | ---: | ---: |
$callbacks

## Mirroring groups into the IM cloud

Command: \`im-bench mirror --url \$URL --writes 300 --pid \$IM_LOCAL_PID\` (with
\`AWS_ENDPOINT_URL_DYNAMODB\` and \`TABLE_NAME\` of the same im-local; the machine's
$mirror_load when it started). It registers its own apps on im-local's table, each
mirrored into an IM cloud stand-in (\`im_e2e::im_cloud\`) served in the bench's process,
with system messages on (as \`make run\`'s development app has them), and adds 300 new
members to one group, one at a time, each after the previous one reached the stand-in
and a random pause of up to 100 ms (so that writes land anywhere in the poller's cycle).
Every add-member write makes two stream records (the member item and the group item),
which usually reach the handler in one batch and cost it two vendor calls (the members,
then the system message).

- **Lag, im-local**: from the write's \`201\` (committed) until the stand-in's
  conversation holds the member; the stand-in's memory is looked at every millisecond.
  Most of it is the poller's idle cycle: after a read that finds nothing it waits 100 ms
  (Lambda's event source mapping polls a shard 4 times a second, so expect more on AWS);
  the rest is the handler's three reads before its first vendor call. The output's last
  lines split the lag of the in-process run (the third item) into these two parts.
- **im-local CPU, mirroring on minus off**: im-local's user + system CPU time
  (\`/proc/PID/stat\`, 10 ms ticks) over the 300 writes, minus the same for the same
  writes by a second app whose mirroring is off, paced like the first run, divided by
  the stream records handed over (\`records_delivered\` of \`/_local/stream\`). Both runs
  serve the same HTTP writes and read the same stream, and with mirroring off the
  handler still reads the group's cursor and the app's settings before it stops, so the
  difference is what mirroring adds: the group read, the vendor calls (the members,
  the system message), the cursor writes, and the stream reads of those cursor writes
  (the filter drops them). The stream reads of the records themselves are in both runs.
- **Sync handler alone**: the function's own work, the figure to compare with Lambda's
  CPU. The same poller, on a table of its own on the same DynamoDB Local, hands each
  batch to \`Syncer::handle\` on a current-thread runtime in a thread of its own, where
  its DynamoDB and HTTP clients are made too; each invocation's CPU is that thread's
  \`CLOCK_THREAD_CPUTIME_ID\` around parsing the batch from JSON, the handler, and
  serializing its answer. A batch here is one write's two records, and the handler
  reads the group's cursor, the app's settings and the group, calls the vendor twice and
  writes the cursor twice (after the system message, and again at the end of the
  batch). Counted: building, signing and parsing the DynamoDB calls, the vendor calls
  as the client makes them, and the handler's own logic. Not counted: what the stand-in
  and DynamoDB Local do, the stream reads (Lambda's poller makes them on AWS), logging
  (off here; one line per batch on AWS) and TLS (plain HTTP to 127.0.0.1 here, HTTPS
  to DynamoDB and the vendor on AWS).

\`\`\`
$mirror
\`\`\`

## Importing an app's conversations, and exporting its groups

Command: \`im-bench import --work DIR --conversations 10000 --conversations 100000\`
(load average when it started: $import_load). For each size it writes a generated
\`_Conversation\` export (JSON lines; 2 to 14 members, median 8, one conversation in
10,000 with 2,000; half keep an \`attr.group_id\`), then on a DynamoDB Local of its own,
in a fresh table of the template's shape without the stream (DynamoDB Local reads a
stream's description in SQLite for every item it writes, a read that grows with the
records the stream holds; bench/src/import.rs says more):

- **import**: \`im-admin import leancloud --app APP --file FILE --report REPORT\` as
  a child process (\`im_admin::import::run\`, on a client that counts each DynamoDB
  call by operation), from spawn to exit; **peak RSS** is the child's, from \`wait4\`.
  New groups of 98 items or fewer go several to a transaction (as many as fit in 100
  items, 4 transactions in flight), each with the conditions of a single create; the
  2,000-member ones in three steps (shared/src/store/dynamo/import.rs).
- **BatchWriteItem floor**: every item the import wrote, read back by a scan (not
  timed) and written into a second fresh table by \`BatchWriteItem\`, 25 a call,
  16 calls in flight, unprocessed items sent again: the same items with no condition
  and no transaction. **import ÷ floor** is the floor's time over the import's.
- **export**: \`im-admin export --app APP --out FILE\` of the result, the same way.

| conversations | groups | members | items written | import | records/s | peak RSS | DynamoDB calls per group | BatchWriteItem floor | import ÷ floor | export | export peak RSS | export calls per group |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |
$(echo "$import" | sed -n '3,$p')
MD
echo "== wrote BENCHMARKS.md"

#!/usr/bin/env bash
# `make test`: every check, in the order that fails fastest. Starts what the tests need
# (DynamoDB Local in memory and the local server via im-local, the Lambda emulator via
# `cargo lambda watch`) on free ports, and stops all of it on exit, pass or fail (the
# start/stop functions are in scripts/lib.sh, shared with bench.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0
export PATH="$PWD/.venv/bin:$PATH"

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
svc_init test keep-logs

# Each step's header says when it started (seconds since make test began), so a slow step
# shows in the log.
step() { printf '\n== %s (at %d s)\n' "$*" "$SECONDS"; }

step "sam build's cargo build of every function (arm64 release), in the background at the lowest CPU priority"
# The same `make lambdas` that sam build's first step runs, started now so it fills the
# cores the steps below leave idle (much of cargo test and schemathesis is waiting on
# DynamoDB Local and HTTP); at nice 19 it yields to them whenever they want a core.
# `sam build` below waits for it, then finds every function built.
(
  started=$SECONDS
  nice -n 19 make --no-print-directory lambdas >"$work/lambdas.log" 2>&1 \
    && echo "finished at $SECONDS s (started at $started s)" >>"$work/lambdas.log"
) &
lambdas_pid=$!
pids+=("$lambdas_pid")
echo "output in $work/lambdas.log"

step "make check: format, lints, im-shared unit tests"
make --no-print-directory check

step "the pipeline and the template, offline: actionlint, cfn-lint, sam validate --lint, cycle check"
make --no-print-directory lint-deploy

step "build"
# What the services and cargo test below run: every library, binary, test and example.
# Not the criterion benchmark (make bench builds it, in release; clippy above checks it).
build_debug

# DynamoDB Local under the whole suite (dozens of concurrent transactions, a JVM on two
# shared cores) at times takes seconds to answer, where DynamoDB takes milliseconds: what
# runs on it gets bounds to match. The defaults (1.5 s an attempt, 3 s a call) are for
# DynamoDB; the tests of unreachable storage use them (e2e/tests/api/unreachable.rs, the
# third emulator below).
slow_ddb_bounds=(IM_DYNAMODB_ATTEMPT_TIMEOUT_MS=10000 IM_DYNAMODB_OPERATION_TIMEOUT_MS=30000)

step "start the local server on DynamoDB Local (in memory), its stream going to the IM cloud mirror"
# The mirror suite's stand-ins answer slowly on purpose (1.5 s): one attempt gives up
# after 0.5 s, one call after 2.5 s, and a record after 3 retries goes to the dead letters.
start_local_server target/debug/im-local \
  IM_SYNC_ATTEMPT_TIMEOUT_MS=500 IM_SYNC_RETRY_BUDGET_MS=2500 IM_LOCAL_STREAM_MAX_RETRIES=3 \
  IM_SYNC_RATE_LIMIT_PAUSE_MS=4000 IM_LOCAL_DRAIN_INTERVAL_MS=500 \
  "${slow_ddb_bounds[@]}"
echo "$ready"

local_aws_env "$ddb_url"
lambda_table=im-lambda
authz_table=im-lambda-authorizer
# The events' app and token key, registered as an operator would (master keys carry the
# suite's mk-test- marker, see below).
demo_key="$work/demo-master-key"
echo "mk-test-demo-$(python3 -c 'import secrets; print(secrets.token_hex(16))')" >"$demo_key"
for table in "$lambda_table" "$authz_table"; do
  target/debug/im-admin --table "$table" table create
  target/debug/im-admin --table "$table" app add demo-app --key-file "$demo_key"
done
target/debug/im-admin --table "$lambda_table" token-key add events-fixture --app demo-app \
  --key-file events/fixture-token-secret

# One emulator per authentication mode; each serves every function binary.
start_emulator() { # log table extra-env [dynamodb-endpoint]; sets $port
  port=$(free_port)
  cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" --ignore-changes \
    --env-var "TABLE_NAME=$2,$(local_aws_env_csv "${4:-$ddb_url}")$3" \
    >"$1" 2>&1 &
  pids+=($!)
  emulator_pids+=($!)
  wait_for_port "$port" 120
}
emulator_pids=()
step "start the Lambda emulators (cargo lambda watch): bearer tokens, and API Gateway's JWT authorizer"
slow_ddb_csv=$(IFS=,; echo ",${slow_ddb_bounds[*]}")
# Its mirror gives a rate-limited call 3 s of retries and the app a 2 s pause (the
# vendor's 20 s and minute, shortened), so that the drain test's deferral ends in seconds.
start_emulator "$work/lambda.log" "$lambda_table" \
  "$slow_ddb_csv,IM_SYNC_RETRY_BUDGET_MS=3000,IM_SYNC_RATE_LIMIT_PAUSE_MS=2000"
lambda_port=$port
start_emulator "$work/lambda-authorizer.log" "$authz_table" \
  "$slow_ddb_csv,IM_AUTH_MODE=authorizer,IM_AUTH_APP_ID=demo-app,IM_AUTH_ADMIN_CLAIM=groups,IM_AUTH_ADMIN_VALUE=im-admin"
authz_port=$port
# And one whose DynamoDB cannot be reached: a port bound for a moment, then let go (every
# connection refused). Its functions warm up at init all the same, which fails first.
start_emulator "$work/lambda-unreachable.log" im-unreachable ",IM_DYNAMODB_WARM_UP=always" \
  "http://127.0.0.1:$(free_port)"
unreachable_port=$port
echo "emulators on 127.0.0.1:$lambda_port (tokens), 127.0.0.1:$authz_port (authorizer)" \
  "and 127.0.0.1:$unreachable_port (DynamoDB unreachable)"

step "cargo test (unit, store, HTTP, Lambda, route agreement)"
# The tests' own DynamoDB Local clients, and the admin command they run, read these too.
export "${slow_ddb_bounds[@]}"
IM_TEST_HTTP_URL="$http_url" \
IM_TEST_DDB_ENDPOINT="$ddb_url" \
IM_TEST_LOCAL_TABLE=im-local \
IM_TEST_DEV_APP=dev-app \
IM_TEST_DEV_KEY_FILE="$work/local/dev-master-key" \
IM_TEST_LAMBDA_PORT="$lambda_port" \
IM_TEST_LAMBDA_TABLE="$lambda_table" \
IM_TEST_AUTHZ_PORT="$authz_port" \
IM_TEST_AUTHZ_TABLE="$authz_table" \
IM_TEST_UNREACHABLE_LAMBDA_PORT="$unreachable_port" \
IM_TEST_DEMO_KEY_FILE="$demo_key" \
IM_TEST_SYNC_DEAD_LETTERS="$work/local/stream-dead-letters.jsonl" \
  cargo test --workspace --no-fail-fast

step "schemathesis: generated requests against openapi.yaml on the local server"
# At most $st_examples generated test cases per operation and phase (coverage, fuzzing,
# stateful): about 3,600 requests, a minute on two cores. Generation is seeded and uses no
# example database, so a run is reproducible (the stateful phase follows what the server
# answered, so its count may vary by a few). It authenticates as the development app's backend (a token
# minted with im-admin, passed through the environment, never printed). Any 5xx, status,
# content type, header or body the document does not allow fails `make test`. Not run:
# positive_data_acceptance and negative_data_rejection, which flag rules a schema cannot
# state (a body's group_id must equal the path's; a cursor must come from its listing).
st_examples=100
IM_SCHEMATHESIS_TOKEN=$(target/debug/im-admin --table im-local token mint \
  --kid dev --sub schemathesis --admin --ttl-seconds 1800)
export IM_SCHEMATHESIS_TOKEN
timeout 900 schemathesis --config-file scripts/schemathesis.toml run openapi.yaml \
  --url "$http_url" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth,unsupported_method,use_after_free \
  --max-examples "$st_examples" --seed 20261126 --generation-database none \
  --workers 1 --no-color >"$work/schemathesis.txt" 2>&1 && st_status=0 || st_status=$?
unset IM_SCHEMATHESIS_TOKEN
if [ "$st_status" -ne 0 ]; then
  cat "$work/schemathesis.txt"
  echo "schemathesis failed (status $st_status); its output is in $work/schemathesis.txt"
  exit 1
fi
# The summary: operations, phases, test cases, the seed.
sed -n '/^=* SUMMARY =*$/,$p' "$work/schemathesis.txt"

step "make smoke: the post-deploy check, against the local server"
# As a pipeline runs it after a deploy: a plain client's token (not the backend's). It
# leaves no group behind.
smoke_token=$(target/debug/im-admin --table im-local token mint --kid dev --sub smoke-client --ttl-seconds 600)
make --no-print-directory smoke URL="$http_url" TOKEN="$smoke_token" APP=dev-app SMOKE_BIN=target/debug/im-smoke
unset smoke_token

step "no secret in any service log"
# Every master key and token secret the suite registers starts with a marker
# (e2e/src/stack.rs); the development and fixture secrets are in their files; every
# token is a JWT, whose header starts "eyJ". None may appear in what the services logged
# (their JSON log lines; im-local's start-up banner prints one short-lived client token on
# purpose). The development master key and token secret appear nowhere in im-local's
# output, banner included (it says which files they are in).
leaks=0
checked=0
if grep -qFf "$work/local/dev-master-key" "$work/local.log" \
  || grep -qFf "$work/local/dev-token-secret" "$work/local.log"; then
  echo "im-local printed the development master key or token secret"; leaks=1
fi
for log in "$work/local.log" "$work/lambda.log" "$work/lambda-authorizer.log" "$work/lambda-unreachable.log"; do
  grep '^{' "$log" >"$log.json" || true
  checked=$((checked + $(wc -l <"$log.json")))
  if grep -qE -- "mk-test-|ts-test-|eyJ" "$log.json" \
    || grep -qFf "$work/local/dev-master-key" "$log.json" \
    || grep -qFf "$work/local/dev-token-secret" "$log.json" \
    || grep -qFf events/fixture-token-secret "$log.json"; then
    echo "a secret or token appears in $log"; leaks=1
  fi
done
[ "$checked" -gt 100 ] || { echo "only $checked log lines to check: the services logged too little"; leaks=1; }
[ "$leaks" -eq 0 ] && echo "checked $checked JSON log lines: no key, secret or token found"
[ "$leaks" -eq 0 ]

step "every request line of the function binaries carries its invocation's request id"
# As CloudWatch gets them: the runtime's invoke span puts the request id on each line.
python3 - "$work/lambda.log.json" "$work/lambda-authorizer.log.json" <<'PY'
import json, sys
lines = 0
for path in sys.argv[1:]:
    for text in open(path):
        line = json.loads(text)
        if line.get("fields", {}).get("message") != "request":
            continue
        if not line.get("span", {}).get("requestId"):
            sys.exit(f"{path}: a request line without span.requestId: {text}")
        lines += 1
if lines < 50:
    sys.exit(f"only {lines} request lines in the emulators' logs")
print(f"{lines} request lines of the function binaries, each with its span.requestId")
PY

# The emulators are done: they watch the tree (inotify), which sam local start-api needs too.
for pid in "${emulator_pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done

step "sam build (arm64 release binaries, cross-compiled with cargo-lambda's zig)"
# The background build's outcome; if it failed, sam build's own step builds again and
# shows why.
wait "$lambdas_pid" || true
tail -n 2 "$work/lambdas.log"
sam build
ls -l .aws-sam/build/*/bootstrap

step "sam local: SAM's own emulators (invoke, start-api) over the arm64 build, in Docker"
# shellcheck source=scripts/sam-local.sh
source scripts/sam-local.sh
sam_local_suites

echo
echo "make test: all checks passed in $SECONDS s"

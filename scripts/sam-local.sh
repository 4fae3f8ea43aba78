# shellcheck shell=bash
# The `sam local` suites of `make test` (sourced by scripts/test.sh after `sam build`,
# with DynamoDB Local still running at $ddb_url and the local AWS settings exported).
# DynamoDB Local listens on 127.0.0.1 only, which no container reaches: on Docker's
# default bridge the containers get to it through bridge-forward (e2e/src/bin), which
# listens on the bridge's gateway address bound to the bridge's interface, takes
# connections from the bridge's subnet only, and forwards them to loopback. No other
# interface of the machine reaches it.
#
#   sam_local_suites   says in one line which suites it runs and why, then runs them:
#     - no Docker engine answering, or one that cannot run arm64 containers: none (a
#       laptop without Docker is fine; make test still passes);
#     - always otherwise: every function and event under `sam local invoke` and every route
#       under `sam local start-api`, with DynamoDB unreachable (503, never a hang);
#     - and, when a probe finds that a container can open a connection to DynamoDB
#       Local on this machine, the full suites against it.
# The suites are the `sam_local` test binary (e2e/tests/sam_local). Nothing here installs
# anything on the machine (.ci/run provides Docker on CI machines).

sam_local_suites() {
  if ! command -v docker >/dev/null; then
    echo "SAM suites: skipped: no docker command here (sam local runs functions in Docker)"
    return 0
  fi
  if ! timeout 20 docker info >/dev/null 2>&1; then
    echo "SAM suites: skipped: no Docker engine answers (docker info failed; sam local runs functions in Docker)"
    return 0
  fi
  local image
  image=$(bash scripts/sam-base-image.sh) || { echo "SAM suites: the base image could not be made"; return 1; }
  # The functions are arm64, as deployed: natively, or through qemu's binfmt handler.
  if ! timeout 120 docker run --rm --platform linux/arm64 --entrypoint /bin/sh "$image" -c true \
    >/dev/null 2>&1; then
    echo "SAM suites: skipped: this Docker engine cannot run arm64 containers (on Linux: qemu-user-static and binfmt-support)"
    return 0
  fi

  # This machine as the containers see it: the default bridge's gateway (Linux), or
  # IM_SAM_HOST (host.docker.internal on Docker Desktop: no forwarder then, the containers
  # get DynamoDB Local's own port, which they reach where the engine carries that name to
  # the host's loopback; elsewhere the probe answers 503).
  local host=${IM_SAM_HOST:-} bridge_if="" bridge_subnet=""
  if [ -z "$host" ]; then
    host=$(docker network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}' 2>/dev/null || true)
    bridge_subnet=$(docker network inspect bridge --format '{{(index .IPAM.Config 0).Subnet}}' 2>/dev/null || true)
    bridge_if=$(docker network inspect bridge --format '{{index .Options "com.docker.network.bridge.name"}}' 2>/dev/null || true)
  fi
  [ "$bridge_if" = "<no value>" ] && bridge_if=""
  # The forwarder needs the gateway's address itself (some engines, Debian's 20.10 among
  # them, name no gateway in the bridge's IPAM config: host.docker.internal then).
  [[ "$host" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || bridge_if=""
  [ -n "$host" ] || host=host.docker.internal
  local ddb_port=${ddb_url##*:}

  # Tables for the full suites (fresh: the replays make group 1), and for the probe.
  local table
  for table in im-sam im-sam-authorizer im-sam-api im-sam-probe; do
    target/debug/im-admin --table "$table" table create
    target/debug/im-admin --table "$table" app add demo-app --key-file "$demo_key"
  done
  for table in im-sam im-sam-api im-sam-probe; do
    target/debug/im-admin --table "$table" token-key add events-fixture --app demo-app \
      --key-file events/fixture-token-secret
  done

  # The probe (e2e/src/bin/sam-probe.rs): a login signature through `sam local invoke`
  # against DynamoDB Local, with the suites' own SAM environment (dummy credentials, no
  # instance metadata, SAM's STS call refused on loopback). 200: containers reach it;
  # 503: they cannot connect (as on this project's CI machines).
  # The probe and the suites as test.sh's build step built them (scripts/lib.sh: nothing
  # to do here then); `cargo run -p im-e2e` and `cargo test -p im-e2e` would resolve
  # features for im-e2e alone and compile 65 crates again (2.5 minutes on two cores).
  build_debug
  if [ -n "$bridge_if" ] && [ -n "$bridge_subnet" ]; then
    target/debug/bridge-forward "$host" "$bridge_if" "$bridge_subnet" "127.0.0.1:$ddb_port" \
      >"$work/bridge-forward.log" 2>&1 &
    pids+=($!)
    wait_for_line "${pids[-1]}" "$work/bridge-forward.log" "^listening on " 30 \
      || { echo "SAM suites: bridge-forward did not start"; return 1; }
    ddb_port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/bridge-forward.log" | head -n1)
    echo "SAM suites: DynamoDB Local (127.0.0.1 only) reached from the bridge $bridge_if ($bridge_subnet) through $host:$ddb_port"
  fi
  local status
  status=$(IM_TEST_SAM_IMAGE="$image" IM_TEST_SAM_HOST="$host" IM_TEST_SAM_DDB_PORT="$ddb_port" \
    IM_TEST_SAM_PROBE_TABLE=im-sam-probe target/debug/sam-probe 2>"$work/sam-probe.log") \
    || status=none
  local filter
  case "$status" in
    200)
      echo "SAM suites: containers reach DynamoDB Local at $host:$ddb_port (probe: a login signature answered 200): running the full suites and the unreachable-storage ones, on $image"
      filter=""
      ;;
    503)
      echo "SAM suites: containers cannot open connections on this machine (probe: a login signature against DynamoDB Local at $host:$ddb_port answered 503): running the unreachable-storage suites only, on $image"
      filter=unreachable_
      ;;
    *)
      echo "SAM suites: the probe failed (status $status):"; cat "$work/sam-probe.log"
      return 1
      ;;
  esac
  IM_TEST_SAM_IMAGE="$image" IM_TEST_SAM_HOST="$host" IM_TEST_SAM_DDB_PORT="$ddb_port" \
  IM_TEST_SAM_TABLE=im-sam IM_TEST_SAM_AUTHZ_TABLE=im-sam-authorizer IM_TEST_SAM_API_TABLE=im-sam-api \
  IM_TEST_DEMO_KEY_FILE="$demo_key" IM_TEST_DDB_ENDPOINT="$ddb_url" \
  IM_TEST_SAM_BRIDGE_FORWARD=${bridge_if:+1} \
    cargo test -q --workspace --test sam_local -- --ignored --nocapture $filter
}

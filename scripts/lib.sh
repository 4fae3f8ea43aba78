# shellcheck shell=bash
# Service start/stop shared by scripts/test.sh and scripts/bench.sh (sourced, not run).
#
#   svc_init NAME [keep-logs]   a temp dir in $work, the pid list, the EXIT trap; with
#                               keep-logs, $work stays (and is named) when the script fails
#   start_local_server BIN [VAR=value ...]
#                               im-local on free ports, DynamoDB Local in memory; sets
#                               $ready, $http_url, $ddb_url
#   wait_for_line PID FILE PATTERN SECONDS
#   wait_for_port PORT SECONDS
#   free_port                   prints a free TCP port on 127.0.0.1
#   local_aws_env ENDPOINT      exports the DynamoDB endpoint and the local AWS settings
#   local_aws_env_csv ENDPOINT  the same as KEY=value,... (for `cargo lambda watch --env-var`)
#   build_debug                 the debug build of every library, binary, test and example
#
# Each service is started in the background with job control on (set -m), so it leads its
# own process group, and the EXIT trap ends every group, pass or fail.

# Every AWS SDK the scripts start talks to DynamoDB Local: static dummy credentials, a
# fixed region, and never the instance-metadata address.
LOCAL_AWS_SETTINGS=(
  AWS_ACCESS_KEY_ID=local
  AWS_SECRET_ACCESS_KEY=local
  AWS_REGION=us-east-1
  AWS_EC2_METADATA_DISABLED=true
)

# One target selection for every debug build the scripts make: Cargo resolves features
# over the packages and targets it is asked for, so `-p im-e2e`, or `--bins` alone (no
# dev-dependencies), would build dozens of crates again with other features.
build_debug() {
  cargo build --workspace --lib --bins --tests --examples --quiet
}

svc_init() { # name [keep-logs]
  svc_name=$1
  svc_keep_logs=${2:-}
  work=$(mktemp -d "${TMPDIR:-/tmp}/im-$svc_name.XXXXXX")
  pids=()
  trap svc_cleanup EXIT
  set -m
}

svc_cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do
    # Each service runs in its own process group (set -m): end the whole group.
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "$status" -ne 0 ] && [ "$svc_keep_logs" = keep-logs ]; then
    echo "make $svc_name FAILED (status $status); service logs kept in $work"
  else
    rm -rf "$work"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for_line() { # pid file pattern seconds
  local deadline=$((SECONDS + $4))
  until grep -q "$3" "$2" 2>/dev/null; do
    if ! kill -0 "$1" 2>/dev/null; then
      echo "the process writing $2 exited:"; tail -n 30 "$2"; return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "timed out waiting for '$3' in $2:"; tail -n 30 "$2"; return 1
    fi
    sleep 0.2
  done
}

wait_for_port() { # port seconds
  local deadline=$((SECONDS + $2))
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for port $1"; return 1; fi
    sleep 0.2
  done
}

# im-local (BIN: target/debug/im-local or target/release/im-local) on a free port, with its
# own DynamoDB Local in memory on another, state in $work/local, output in $work/local.log.
# Extra VAR=value arguments go into its environment.
# shellcheck disable=SC2034 # $http_url and $ddb_url are for the caller
start_local_server() { # bin [VAR=value ...]
  local bin=$1
  shift
  env PORT=0 DYNAMODB_PORT=0 IM_LOCAL_IN_MEMORY=1 IM_LOCAL_DIR="$work/local" "$@" \
    "$bin" >"$work/local.log" 2>&1 &
  pids+=($!)
  wait_for_line "${pids[-1]}" "$work/local.log" "im-local ready:" 120 || return 1
  # im-local ready: http://127.0.0.1:PORT dynamodb=http://127.0.0.1:PORT table=... app=...
  ready=$(grep "im-local ready:" "$work/local.log")
  http_url=$(sed -E 's/.*ready: ([^ ]+).*/\1/' <<<"$ready")
  ddb_url=$(sed -E 's/.*dynamodb=([^ ]+).*/\1/' <<<"$ready")
}

local_aws_env() { # dynamodb endpoint
  export AWS_ENDPOINT_URL_DYNAMODB="$1" "${LOCAL_AWS_SETTINGS[@]}"
}

local_aws_env_csv() { # dynamodb endpoint
  local IFS=,
  echo "AWS_ENDPOINT_URL_DYNAMODB=$1,${LOCAL_AWS_SETTINGS[*]}"
}

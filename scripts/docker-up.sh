# shellcheck shell=bash
# Sourced by .ci/run (root, a Debian machine with no Docker engine running): make a Docker
# engine reachable for the `sam local` suites of `make test`, and stop it after.
#   docker_up     installs Debian's docker.io, qemu-user-static and binfmt-support when
#                 missing, registers arm64 emulation, starts dockerd in the background
#   docker_down   stops the dockerd that docker_up started (nothing else)
# Never used by `make run` or `make test`: they only look for an engine that is already
# there (scripts/sam-local.sh) and skip the SAM suites without one.

docker_started_pid=""

docker_ready() { timeout 10 docker info >/dev/null 2>&1; }

docker_up() {
  if docker_ready; then
    echo "docker: an engine is already running"
    docker_arm64
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "docker: no engine, and this is not a root Debian machine: the sam local suites will be skipped"
    return 0
  fi
  local missing=()
  for pkg in docker.io qemu-user-static binfmt-support; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "docker: installing ${missing[*]} from Debian's packages"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null; }; then
      echo "docker: the install failed: the sam local suites will be skipped"
      return 0
    fi
  fi
  docker_arm64
  # Debian's dockerd, whichever docker client comes first on PATH.
  local dockerd=/usr/sbin/dockerd
  [ -x "$dockerd" ] || dockerd=$(command -v dockerd)
  mkdir -p /tmp/im-ci
  # Without the userland proxy, a published port refuses connections until the process
  # in the container listens on it. SAM waits for the port to accept and then gives the
  # runtime interface emulator only three quick tries (a third of a second); with the
  # proxy, the port accepts at once, and an emulated arm64 emulator that starts more
  # slowly than that gets "No response from invoke container".
  "$dockerd" --userland-proxy=false >/tmp/im-ci/dockerd.log 2>&1 &
  docker_started_pid=$!
  for _ in $(seq 60); do
    docker_ready && { echo "docker: dockerd started (log /tmp/im-ci/dockerd.log)"; return 0; }
    kill -0 "$docker_started_pid" 2>/dev/null || break
    sleep 1
  done
  echo "docker: dockerd did not become ready (log /tmp/im-ci/dockerd.log): the sam local suites will be skipped"
  tail -20 /tmp/im-ci/dockerd.log || true
  docker_down
}

# arm64 containers (the functions are arm64, as on Lambda) run through qemu's binfmt handler.
docker_arm64() {
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && return 0
  [ "$(id -u)" -eq 0 ] || return 0
  [ -e /proc/sys/fs/binfmt_misc/register ] \
    || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
  command -v update-binfmts >/dev/null && update-binfmts --enable qemu-aarch64 2>/dev/null || true
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
    && echo "docker: arm64 emulation registered" \
    || echo "docker: arm64 emulation is not available"
}

docker_down() {
  [ -n "$docker_started_pid" ] || return 0
  # Our containers first (sam local leaves none behind when it ends cleanly).
  docker ps -q | xargs -r docker rm -f >/dev/null 2>&1 || true
  kill "$docker_started_pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$docker_started_pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$docker_started_pid" 2>/dev/null || true
  docker_started_pid=""
  echo "docker: dockerd stopped"
}

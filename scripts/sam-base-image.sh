#!/usr/bin/env bash
# Prints the base image `sam local` should run the functions on (arm64, provided.al2023),
# making it first when needed:
#   - AWS's own image, public.ecr.aws/lambda/provided:al2023 for arm64, when it is already
#     in the Docker engine or can be pulled (then SAM uses it as usual);
#   - otherwise a local stand-in, built here from Debian's arm64 packages and tagged
#     im-service/lambda-standin:<packages' hash>: the C library and libgcc our bootstrap
#     links, the CA certificates, and busybox for the shell, mv and chmod that SAM's own
#     Dockerfile runs on top of it (SAM adds its runtime interface emulator there).
# The packages are fetched with apt into .local/sam-base (its own lists and cache: the
# machine's apt state and architectures are not touched) and unpacked with dpkg-deb.
# Progress goes to stderr; stdout is the image name only.
set -euo pipefail
cd "$(dirname "$0")/.."

aws_image=public.ecr.aws/lambda/provided:al2023
log() { echo "sam-base-image: $*" >&2; }

if docker image inspect "$aws_image" >/dev/null 2>&1 \
  && [ "$(docker image inspect -f '{{.Architecture}}' "$aws_image")" = arm64 ]; then
  log "using AWS's $aws_image (already here)"
  echo "$aws_image"; exit 0
fi
if [ "${IM_SAM_TRY_PULL:-1}" = 1 ] \
  && timeout 60 docker pull -q --platform linux/arm64 "$aws_image" >/dev/null 2>&1; then
  log "using AWS's $aws_image (pulled)"
  echo "$aws_image"; exit 0
fi
log "AWS's $aws_image cannot be pulled here: using a stand-in made from Debian's arm64 packages"

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
  || { log "the stand-in needs apt-get and dpkg-deb (a Debian or Ubuntu host)"; exit 1; }

dir=$PWD/.local/sam-base
mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/debs"
apt_opts=(
  -o APT::Architecture=arm64 -o APT::Architectures::=arm64
  -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache"
  -o Dir::State::status=/dev/null -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)" -qq
)
packages=(libc6 libgcc-s1 busybox-static ca-certificates)
if [ ! -f "$dir/lists/.updated" ] || [ -n "$(find "$dir/lists/.updated" -mtime +7)" ]; then
  apt-get "${apt_opts[@]}" update >&2
  touch "$dir/lists/.updated"
fi
# name=version for each package: the image tag follows them.
versions=$(apt-cache "${apt_opts[@]}" show --no-all-versions "${packages[@]}" \
  | awk '/^Package:/{p=$2} /^Version:/{print p "=" $2}' | sort)
tag="im-service/lambda-standin:$(printf '%s\n' "$versions" | sha256sum | cut -c1-12)"
if docker image inspect "$tag" >/dev/null 2>&1; then
  log "the stand-in $tag is already built"
  echo "$tag"; exit 0
fi

(cd "$dir/debs" && rm -f ./*.deb && apt-get "${apt_opts[@]}" download $versions >&2)
root=$dir/rootfs
rm -rf "$root" && mkdir -p "$root"
for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
mkdir -p "$root"/{bin,tmp,var/task,var/runtime,opt,etc/ssl/certs}
chmod 1777 "$root/tmp"
for applet in sh mv chmod cp rm ls cat mkdir ln env; do
  ln -sf /bin/busybox "$root/bin/$applet"
done
# What update-ca-certificates would write, without running anything arm64 at build time.
cat "$root"/usr/share/ca-certificates/*/*.crt >"$root/etc/ssl/certs/ca-certificates.crt"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
# Drop what a function never reads (documentation, locales) to keep the image small.
rm -rf "$root"/usr/share/{doc,man,locale,lintian}

# FROM scratch with --platform: the image is marked arm64 (docker import would mark it
# with the host's architecture, and SAM then could not find an arm64 base).
ctx=$dir/context
rm -rf "$ctx" && mkdir -p "$ctx"
tar -C "$root" -cf "$ctx/rootfs.tar" .
printf '%s\n' 'FROM scratch' 'ADD rootfs.tar /' 'ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8' \
  'WORKDIR /var/task' >"$ctx/Dockerfile"
# Without buildx, the classic builder (an engine of Debian's docker.io has no BuildKit client).
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
docker build -q --platform linux/arm64 -t "$tag" "$ctx" >/dev/null 2>"$dir/build.log" \
  || { cat "$dir/build.log" >&2; exit 1; }
rm -rf "$ctx"
rm -rf "$root"
log "built $tag from: $(echo $versions)"
echo "$tag"

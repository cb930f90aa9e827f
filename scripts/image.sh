#!/usr/bin/env bash
# Builds the container image from Dockerfile with buildah -- no Docker
# engine, no registry -- and proves it: every stage of the Dockerfile runs
# (its first stage on a local stand-in for golang:1.26-bookworm made from
# this machine's Go toolchain, see the top of Dockerfile), then the image's
# root filesystem is mounted and checked: a static binary that runs there
# as the unprivileged user, CA bundle, passwd entry, an empty /cache owned
# by that user, and the image configuration (no USER: it starts as root,
# port, volume, health check, entrypoint, the seed's variables). Finally
# the binary serves from that root filesystem, started as root as docker
# starts it, with a root-owned /cache and the image's environment: it
# answers /healthz while running as the unprivileged user, and /cache is
# that user's. (scripts/engines.sh then runs the image in real docker and
# containerd.) Everything goes into a private buildah store in a
# temporary directory, removed at exit.
#
# Needs root, Go, and the Debian packages buildah (which brings uidmap,
# crun and fuse-overlayfs), jq and iproute2. Environment:
#   ARCHIVE=file.tar  also save the image there, as ecr-proxy:$VERSION
#   STORAGE_DRIVER   overlay (default when it works here) or vfs
#   VERSION, REVISION  stamped into `registry --version`
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'image.sh: FAIL: %s\n' "$*" >&2; exit 1; }

for tool in buildah jq go chroot unshare ip; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install -y buildah jq iproute2)"
done
CHROOT=$(command -v chroot); export CHROOT
[ "$(id -u)" = 0 ] || fail "run as root (buildah's chroot isolation and mounts need it)"

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || true)}
UID_GID=65532:65532
TAG=localhost/ecr-proxy:image-sh
# The image the Dockerfile's first stage starts from, replaced by the stand-in.
GO_BASE=$(awk 'toupper($1) == "FROM" { print $2; exit }' Dockerfile)

work=$(mktemp -d /var/tmp/ecr-proxy-image.XXXXXX)
cleanup() {
  set +e
  "${B[@]}" unmount --all >/dev/null 2>&1
  "${B[@]}" rm --all >/dev/null 2>&1
  "${B[@]}" rmi --all --force >/dev/null 2>&1
  # Anything still mounted under the store (overlay layers) before removal.
  findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# A private store: nothing is pulled, and other builds on the machine are
# neither seen nor disturbed.
driver=${STORAGE_DRIVER:-}
if [ -z "$driver" ]; then
  driver=overlay
  buildah --root "$work/probe" --runroot "$work/probe-run" --storage-driver overlay info >/dev/null 2>&1 || driver=vfs
  rm -rf "$work/probe" "$work/probe-run"
fi
B=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver "$driver")
export BUILDAH_ISOLATION=chroot
echo "buildah $(buildah --version | awk '{print $3}'), storage driver $driver, version $VERSION"

step "stand-in for $GO_BASE from $(go env GOVERSION) at $(go env GOROOT)"
goroot=$(go env GOROOT)
toolchain=localhost/ecr-proxy-go-toolchain:$(go env GOVERSION)
ctr=$("${B[@]}" from scratch)
mnt=$("${B[@]}" mount "$ctr")
mkdir -p "$mnt/usr/local" "$mnt/go" "$mnt/tmp" "$mnt/root" "$mnt/bin" "$mnt/etc/ssl/certs"
chmod 1777 "$mnt/tmp"
cp -a "$goroot" "$mnt/usr/local/go"
cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/"
# root's home is /root (buildah makes HOME / without a passwd entry, and
# go's build cache would move away from the mount below).
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$mnt/etc/passwd"
printf 'root:x:0:\n' >"$mnt/etc/group"
# /bin/sh for RUN, with the shared libraries it loads.
cp -L /bin/sh "$mnt/bin/sh"
for lib in $(ldd /bin/sh | grep -o '/[^ ]*'); do
  mkdir -p "$mnt$(dirname "$lib")"
  cp -L "$lib" "$mnt$lib"
done
"${B[@]}" unmount "$ctr" >/dev/null
# golang:1.26-bookworm's environment.
"${B[@]}" config --workingdir /go \
  --env GOLANG_VERSION="$(go env GOVERSION | sed 's/^go//')" --env GOTOOLCHAIN=local --env GOPATH=/go \
  --env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  "$ctr"
"${B[@]}" commit --quiet --rm "$ctr" "$toolchain" >/dev/null

step "buildah build (isolation chroot) of Dockerfile"
# The machine's module and build caches are lent to the go commands in the
# build stage (bind mounts: not part of any layer), so the build needs no
# download and, after the first time, little compiling.
mkdir -p "$(go env GOMODCACHE)" "$(go env GOCACHE)"
start=$(date +%s)
# Docker format: the OCI image config has no place for HEALTHCHECK.
"${B[@]}" build --isolation chroot --pull=never --layers=false --format docker \
  --build-context "$GO_BASE=container-image://$toolchain" \
  --volume "$(go env GOMODCACHE):/go/pkg/mod" \
  --volume "$(go env GOCACHE):/root/.cache/go-build" \
  --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
  --file Dockerfile --tag "$TAG" .
echo "built in $(($(date +%s) - start))s"

step "image configuration"
"${B[@]}" inspect --type image "$TAG" | jq '.Docker.config' >"$work/config.json"
cat "$work/config.json"
check_config() { # jq-condition description
  jq -e "$1" "$work/config.json" >/dev/null || fail "image config: $2"
  echo "ok   $2"
}
# serve starts as root and drops to $UID_GID itself (cmd/registry/privdrop.go).
check_config '(.User // "") == ""' "User is unset: starts as root, serves as $UID_GID"
check_config '.ExposedPorts | keys == ["5000/tcp"]' "ExposedPorts is 5000/tcp"
check_config '.Volumes | keys == ["/cache"]' "Volumes is /cache"
check_config '.Healthcheck.Test == ["CMD", "/registry", "healthcheck"]' "Healthcheck runs /registry healthcheck"
check_config '.Entrypoint == ["/registry"] and .Cmd == ["serve"]' "Entrypoint /registry, Cmd serve"
for kv in PORT=5000 ECR_PROXY_DROP_PRIVILEGES=true CACHE_MAX_SIZE=75g RENEW_INTERVAL_HOURS=6 ENABLE_SSL=false; do
  check_config '.Env | index("'"$kv"'") != null' "Env has $kv"
done
check_config '[.Env[] | select(startswith("ECR="))] == []' "Env has no ECR (it must be given)"

step "root filesystem"
ctr=$("${B[@]}" from --pull=never "$TAG")
root=$("${B[@]}" mount "$ctr")
(cd "$root" && find . -printf '%M %U:%G %8s %p\n' | sort -k4)
[ "$(find "$root" -mindepth 1 -maxdepth 1 | wc -l)" -eq 3 ] || fail "root has more than registry, etc and cache"
check() { # description command...
  local what=$1; shift
  "$@" || fail "$what"
  echo "ok   $what"
}
check "/registry is an executable file" test -f "$root/registry" -a -x "$root/registry"
check "/etc/ssl/certs/ca-certificates.crt holds certificates" grep -q 'BEGIN CERTIFICATE' "$root/etc/ssl/certs/ca-certificates.crt"
check "/etc/passwd names $UID_GID" grep -q "^nonroot:x:$UID_GID:" "$root/etc/passwd"
check "/cache is an empty directory owned by $UID_GID" \
  test -d "$root/cache" -a -z "$(ls -A "$root/cache")" -a "$(stat -c %u:%g "$root/cache")" = "$UID_GID"

step "static binary"
# ldd (libc-bin, always there) refuses a static executable; file says so.
# (The single-quoted scripts get their path as $1.)
# shellcheck disable=SC2016
check "ldd: not a dynamic executable" bash -c '! ldd "$1" >/dev/null 2>&1' _ "$root/registry"
if command -v file >/dev/null; then
  file "$root/registry"
  # shellcheck disable=SC2016
  check "file: statically linked" bash -c 'file -b "$1" | grep -q "statically linked"' _ "$root/registry"
fi
go version -m "$root/registry" | grep -vE '^\s+(dep|=>)\s' | tee "$work/buildinfo"
check "built with CGO_ENABLED=0" grep -q 'CGO_ENABLED=0' "$work/buildinfo"
check "built with -trimpath" grep -q -- '-trimpath=true' "$work/buildinfo"

step "registry --version in the image's root, as $UID_GID"
out=$(env -i "$CHROOT" --userspec="$UID_GID" "$root" /registry --version)
echo "$out"
check "--version says ecr-proxy $VERSION" grep -qF "ecr-proxy $VERSION " <<<"$out"
[ -z "$REVISION" ] || check "--version says commit $REVISION" grep -qF "(commit $REVISION)" <<<"$out"

step "registry serve in the image's root, started as root on a root-owned /cache, with the image's environment"
# In namespaces of its own: a network with only loopback, so nothing
# leaves the machine whatever the binary tries (AWS endpoints and ECR point
# at a closed loopback port, instance metadata is off), mounts undone and
# every process ended when it exits.
port=$((20000 + RANDOM % 20000))
mapfile -t image_env < <(jq -r '.Env[]' "$work/config.json")
cat >"$work/serve.sh" <<'SERVE'
set -u
root=$1 port=$2 uid_gid=$3 log=$4; shift 4
ip link set lo up
# What a container runtime provides: /proc (the binary reads /proc/self/exe).
mkdir -p "$root/proc"
mount -t proc proc "$root/proc"
# As docker leaves a bind-mounted directory it created: root's.
chown 0:0 "$root/cache"
env -i "$@" PORT="$port" ECR=http://127.0.0.1:9 AWS_REGION=us-east-1 \
  AWS_ENDPOINT_URL=http://127.0.0.1:9 AWS_EC2_METADATA_DISABLED=true \
  AWS_ACCESS_KEY_ID=image-sh AWS_SECRET_ACCESS_KEY=image-sh \
  "$CHROOT" "$root" /registry serve >"$log" 2>&1 &
pid=$!
health() {
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  head -n1 <&3 | grep -q ' 200 '
  local rc=$?; exec 3<&-; return $rc
}
rc=1
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || break
  if health 2>/dev/null; then rc=0; break; fi
  sleep 0.2
done
if [ $rc = 0 ]; then
  echo "ok   GET /healthz answered 200 on port $port"
  # $pid is in this PID namespace: its /proc is the one mounted above.
  uids=$(awk '/^Uid:/ { print $2 ":" $3 ":" $4 ":" $5 }' "$root/proc/$pid"/task/*/status | sort -u)
  if [ "$uids" = "${uid_gid%%:*}:${uid_gid%%:*}:${uid_gid%%:*}:${uid_gid%%:*}" ]; then
    echo "ok   every thread of serve runs as UID ${uid_gid%%:*} (real, effective, saved, fs)"
  else
    echo "FAIL serve's threads run as UIDs $uids" >&2; rc=1
  fi
  if [ "$(stat -c %u:%g "$root/cache")" = "$uid_gid" ]; then
    echo "ok   serve gave the root-owned /cache to $uid_gid"
  else
    echo "FAIL /cache is owned by $(stat -c %u:%g "$root/cache")" >&2; rc=1
  fi
  if env -i "$CHROOT" --userspec="$uid_gid" "$root" /registry healthcheck --help >/dev/null 2>&1; then
    env -i "$@" PORT="$port" "$CHROOT" "$root" /registry healthcheck || rc=1
    [ $rc = 0 ] && echo "ok   /registry healthcheck exits 0"
  else
    echo "skip /registry healthcheck: this binary has no such command yet"
  fi
  # Cache writes go to /cache, as the image's user.
  [ -n "$(find "$root/cache" -mindepth 1 -print -quit)" ] && echo "note /cache now holds: $(cd "$root/cache" && find . -mindepth 1 | head -5 | tr '\n' ' ')"
fi
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
exit $rc
SERVE
if ! unshare --net --mount --pid --fork bash "$work/serve.sh" "$root" "$port" "$UID_GID" "$work/serve.log" "${image_env[@]}"; then
  cat "$work/serve.log" >&2 || true
  fail "registry serve did not answer /healthz"
fi
sed -n '1,15p' "$work/serve.log"
"${B[@]}" unmount "$ctr" >/dev/null
"${B[@]}" rm "$ctr" >/dev/null

if [ -n "${ARCHIVE:-}" ]; then
  step "saving the image to $ARCHIVE (docker-archive: docker load -i, or buildah pull docker-archive:)"
  "${B[@]}" push --quiet "$TAG" "docker-archive:$ARCHIVE:ecr-proxy:$VERSION"
fi

step "image OK: $TAG, in ${SECONDS}s"

#!/usr/bin/env bash
# The container image in real engines, end to end: Debian's docker.io
# (dockerd) and containerd run the image the way users do, in front of the
# project's ECR emulator, and pull and push through it.
#
#   * dockerd (vfs storage, no iptables, no bridge) on its own containerd,
#     both with private state, sockets and pid files in a temporary
#     directory; the image from scripts/image.sh (buildah) is loaded with
#     `docker load`.
#   * The proxy runs with the seed's `docker run` line, unchanged:
#     --net=host, a bind-mounted cache directory docker creates (as root),
#     the certificate and a root-only (0600) key bind-mounted, the seed's
#     variables with TLS on, and a root-only AWS credentials file in a
#     mounted ~/.aws (as the seed's README offers). It must serve as UID
#     65532, not root, and still use the key and the credentials.
#   * docker pulls by tag and by digest; docker builds an image (FROM
#     scratch, COPY), pushes it through the proxy, removes it, pulls it
#     again; `ctr images pull` goes through the proxy as a registry mirror
#     (hosts.toml, as docs/operating.md tells containerd users); the
#     image's HEALTHCHECK turns healthy; a read-only cache mount stops the
#     proxy with a message that says what to do.
#
# Traffic stays on loopback: the emulator listens on 127.0.0.1/127.0.0.2,
# the proxy's resolver is 127.0.0.1, and every daemon started here is
# stopped by its PID at exit, its files removed.
#
# Needs root and Go; installs the Debian packages it lacks (docker.io,
# containerd, runc, openssl, curl, iproute2). Environment:
#   IMAGE_ARCHIVE=file.tar  a docker-archive from `ARCHIVE=file.tar
#                           scripts/image.sh`; built here when unset
#   KEEP=1                  on failure, keep the temporary directory
set -euo pipefail
cd "$(dirname "$0")/.."

# fd 3 is stderr even where a check's own output is silenced (wait_for).
exec 3>&2
step() { printf '\n==> %s (%ss)\n' "$*" "$SECONDS"; }
fail() { printf 'engines.sh: FAIL: %s\n' "$*" >&3; exit 1; }
ok() { printf 'ok   %s\n' "$*"; }

[ "$(id -u)" = 0 ] || fail "run as root (dockerd and containerd need it)"
command -v go >/dev/null || fail "go is missing"

packages=(docker.io containerd runc openssl curl iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  command -v apt-get >/dev/null || fail "these Debian packages are needed: ${missing[*]}"
  apt-get update -qq
  # The packages' own services (a system dockerd and containerd) are not
  # started: this script starts, and stops, its own daemons.
  # policy-rc.d is how Debian's maintainer scripts are told so.
  policy=''
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ -z "$policy" ] || rm -f "$policy"
  [ $rc = 0 ] || fail "apt-get install ${missing[*]}"
fi
# Debian's client, matching its dockerd; another docker earlier on PATH
# may be a newer client that wants buildx.
DOCKER_CLI=/usr/bin/docker
for tool in "$DOCKER_CLI" /usr/sbin/dockerd /usr/bin/containerd /usr/bin/ctr openssl curl ss; do
  command -v "$tool" >/dev/null || fail "$tool is missing"
done

work=$(mktemp -d /var/tmp/ecr-proxy-engines.XXXXXX)
name=ecr-proxy-engines-$$
ctr_ns=ecr-proxy-engines
containerd_pid='' dockerd_pid='' emulator_pid=''

# stop_pid PID WHAT: SIGTERM, then SIGKILL after 20 s.
stop_pid() {
  local pid=$1 what=$2
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "engines.sh: $what (pid $pid) ignored SIGTERM for 20s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  if [ $rc != 0 ]; then
    for log in dockerd containerd emulator; do
      [ -s "$work/$log.log" ] && { echo "--- last lines of $log's log"; tail -n 20 "$work/$log.log"; }
    done
    if [ -n "$dockerd_pid" ]; then
      docker logs "$name" >"$work/proxy.log" 2>&1
      echo "--- the proxy's log (all of it in proxy.log, with KEEP=1)"
      tail -n 40 "$work/proxy.log"
      echo "--- the proxy's state"
      docker inspect -f '{{json .State}}' "$name"
    fi
  fi
  if [ -n "$dockerd_pid" ]; then
    docker rm -f "$name" "$name-ro" >/dev/null 2>&1
  fi
  stop_pid "$dockerd_pid" dockerd
  stop_pid "$containerd_pid" containerd
  stop_pid "$emulator_pid" ecr-emulator
  # Container shims outlive their daemon only if a container was left
  # running; they name this run's directory in their arguments.
  local pid args
  while read -r pid args; do
    case "$args" in
      *containerd-shim*"$work"*)
        echo "engines.sh: stopping a leftover shim, pid $pid" >&2
        stop_pid "$pid" shim
        ;;
    esac
  done < <(ps -eo pid=,args=)
  findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r umount -l 2>/dev/null
  if [ $rc != 0 ] && [ -n "${KEEP:-}" ]; then
    echo "engines.sh: kept $work" >&2
  else
    rm -rf "$work"
  fi
  exit $rc
}
trap cleanup EXIT

# free_port prints a TCP port no socket uses at the moment, below the
# kernel's range of ephemeral ports: a port in that range can be taken as
# the local port of an outgoing connection between this check and the
# listener's bind (seen: "bind: address already in use").
free_port() {
  local p low
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 12000 ] || low=32768
  while :; do
    p=$((10000 + RANDOM % (low - 10000)))
    if [ -z "$(ss -Htan "sport = :$p")" ]; then
      echo "$p"
      return
    fi
  done
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what: not within ${limit}s"
    sleep 0.2
  done
}

docker() { DOCKER_HOST="unix://$work/docker.sock" DOCKER_CONFIG="$work/docker-config" "$DOCKER_CLI" "$@"; }
ctr() { /usr/bin/ctr --address "$work/containerd/containerd.sock" --namespace "$ctr_ns" "$@"; }

archive=${IMAGE_ARCHIVE:-}
if [ -z "$archive" ]; then
  step "building the image (scripts/image.sh)"
  archive=$work/ecr-proxy.tar
  ARCHIVE=$archive ./scripts/image.sh >"$work/image.log" 2>&1 || { tail -n 40 "$work/image.log"; fail "scripts/image.sh"; }
fi
[ -s "$archive" ] || fail "no image archive at $archive"

step "ECR emulator on loopback"
go build -o "$work/ecr-emulator" ./cmd/ecr-emulator
ecr_port=$(free_port) api_port=$(free_port) s3_port=$(free_port)
"$work/ecr-emulator" -registry-addr "127.0.0.1:$ecr_port" -api-addr "127.0.0.1:$api_port" -s3-addr "127.0.0.2:$s3_port" \
  -seed team/app:1.0 -seed team/bydigest:2.0 >"$work/emulator.env" 2>"$work/emulator.log" &
emulator_pid=$!
wait_for 60 "the emulator's environment" grep -q '^export ECR=' "$work/emulator.env"
# shellcheck disable=SC1091 # written by the emulator: export K="V" lines
. "$work/emulator.env"
bydigest=$(grep -o 'seeded team/bydigest:2.0@sha256:[0-9a-f]*' "$work/emulator.log" | cut -d@ -f2)
[ -n "$bydigest" ] || fail "no digest for team/bydigest:2.0 in the emulator's log"
ok "ECR at $ECR, AWS API at $AWS_ENDPOINT_URL_ECR, team/bydigest:2.0 is $bydigest"

step "containerd $(/usr/bin/containerd --version | awk '{print $3}')"
mkdir -p "$work/containerd"
cat >"$work/containerd/config.toml" <<EOF
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
# Kubernetes' CRI plugin is not what this tests (ctr uses hosts.toml
# through --hosts-dir, as the CRI plugin does through config_path).
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd/containerd.sock"
[ttrpc]
  address = "$work/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/containerd/opt"
EOF
/usr/bin/containerd --config "$work/containerd/config.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
wait_for 30 "containerd answers" ctr version
ok "containerd, pid $containerd_pid"

step "dockerd $("$DOCKER_CLI" --version | awk '{print $3}' | tr -d ,) (vfs, no iptables, no bridge)"
mkdir -p "$work/docker-config"
echo '{}' >"$work/daemon.json"
/usr/sbin/dockerd --config-file "$work/daemon.json" \
  --data-root "$work/docker" --exec-root "$work/docker-exec" --pidfile "$work/docker.pid" \
  --host "unix://$work/docker.sock" --containerd "$work/containerd/containerd.sock" \
  --storage-driver=vfs --iptables=false --bridge=none >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
wait_for 60 "dockerd answers" docker version
ok "dockerd, pid $dockerd_pid"

step "docker load of the buildah-built image"
image=$(docker load -i "$archive" | sed -n 's/^Loaded image: //p' | tail -n1)
[ -n "$image" ] || fail "docker load named no image"
ok "loaded $image ($(docker image inspect -f '{{.Size}}' "$image") bytes, user '$(docker image inspect -f '{{.Config.User}}' "$image")')"

step "the seed's docker run line"
# As in the seed's README: a cache directory docker creates, owned by
# root, and a certificate with a root-only key.
reg=$work/registry
mkdir -p "$reg"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$reg/key.pem" -out "$reg/certificate.pem" 2>/dev/null
chown 0:0 "$reg/key.pem" && chmod 0600 "$reg/key.pem"
# The AWS identity from a credentials file, mounted as the seed's README
# offers, readable by root alone (the emulator's keys).
mkdir -p "$reg/aws"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
  "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$reg/aws/credentials"
chmod 0600 "$reg/aws/credentials"
[ ! -e "$reg/local-storage" ] || fail "the cache directory exists before docker run"
port=$(free_port)
proxy=localhost:$port
# The seed's line; RESOLVER is loopback (the seed's example has 8.8.8.8)
# so that nothing is resolved off this machine; the AWS credentials file
# is mounted, and AWS's endpoint variables point at the emulator.
docker run -d --name "$name" --net=host \
  -v "$reg/local-storage/cache:/cache" \
  -v "$reg/certificate.pem:/opt/ssl/certificate.pem" \
  -v "$reg/key.pem:/opt/ssl/key.pem" \
  -e PORT="$port" \
  -e RESOLVER=127.0.0.1 \
  -e ECR="$ECR" \
  -e CACHE_MAX_SIZE=100g \
  -e ENABLE_SSL=true \
  -e SSL_KEY=/opt/ssl/key.pem \
  -e SSL_CERTIFICATE=/opt/ssl/certificate.pem \
  -v "$reg/aws:/root/.aws:ro" \
  -e AWS_REGION -e AWS_ENDPOINT_URL_ECR -e AWS_ENDPOINT_URL_STS -e AWS_EC2_METADATA_DISABLED \
  "$image" >/dev/null
started=$SECONDS
answers() {
  [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] ||
    fail "the proxy exited: $(docker logs "$name" 2>&1 | grep -m1 '^Error' || true)"
  curl -fsS --cacert "$reg/certificate.pem" "https://$proxy/healthz"
}
wait_for 60 "the proxy answers https://$proxy/healthz with its certificate" answers
ok "https://$proxy/healthz answers 200, verified with the proxy's certificate"

pid=$(docker inspect -f '{{.State.Pid}}' "$name")
uids=$(awk '/^Uid:/ { print $2 ":" $3 ":" $4 ":" $5 }' /proc/"$pid"/task/*/status | sort -u)
[ "$uids" = "65532:65532:65532:65532" ] || fail "the proxy's threads run as UIDs $uids"
caps=$(awk '/^CapEff:/ { print $2 }' /proc/"$pid"/task/*/status | sort -u)
[ "$caps" = "0000000000000000" ] || fail "the proxy holds capabilities $caps"
ok "every thread of the proxy (pid $pid) runs as UID 65532, with no capability"
owner=$(stat -c %u:%g "$reg/local-storage/cache")
[ "$owner" = "65532:65532" ] || fail "the cache directory is owned by $owner"
ok "the cache directory docker created as root now belongs to 65532:65532"
[ "$(stat -c %u:%a "$reg/key.pem")" = "0:600" ] || fail "the key's owner or mode changed"
ok "the key is still root's, 0600"
# The log is read whole first: with pipefail, grep -q closing the pipe
# early would fail docker logs (SIGPIPE) and the test with it.
logs=$(docker logs "$name" 2>&1)
for f in "SSL_KEY /opt/ssl/key.pem" "AWS_SHARED_CREDENTIALS_FILE /root/.aws/credentials"; do
  grep -qF "$f is not readable by UID 65532" <<<"$logs" || fail "the log does not say that $f is read from its copy"
done
ok "the key and the AWS credentials, root's alone, are read from copies taken at start (as the log says)"

step "docker pull by tag and by digest"
docker pull -q "$proxy/team/app:1.0" >/dev/null
app_digest=$(docker image inspect -f '{{index .RepoDigests 0}}' "$proxy/team/app:1.0")
ok "docker pull $proxy/team/app:1.0 ($app_digest)"
docker pull -q "$proxy/team/bydigest@$bydigest" >/dev/null
docker image inspect "$proxy/team/bydigest@$bydigest" >/dev/null
ok "docker pull $proxy/team/bydigest@$bydigest"
docker rmi -f "$proxy/team/app:1.0" >/dev/null
docker pull -q "$proxy/team/app:1.0" >/dev/null
ok "docker pull again after docker rmi (from the cache)"
blobs=$(find "$reg/local-storage/cache" -path '*/blobs/*' -name data | wc -l)
[ "$blobs" -gt 0 ] || fail "nothing cached in the bind-mounted directory"
ok "$blobs blobs cached in the bind-mounted directory"

step "docker build, push through the proxy, rmi, pull"
mkdir -p "$work/build"
marker="pushed through ecr-proxy by engines.sh $$ at $(date -u +%FT%TZ)"
echo "$marker" >"$work/build/hello.txt"
printf 'FROM scratch\nCOPY hello.txt /hello.txt\n' >"$work/build/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$proxy/team/pushed:1.0" "$work/build" >/dev/null
push_out=$(docker push "$proxy/team/pushed:1.0")
pushed=$(sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p' <<<"$push_out")
[ -n "$pushed" ] || { echo "$push_out"; fail "docker push printed no digest"; }
ok "docker push $proxy/team/pushed:1.0 ($pushed)"
docker rmi "$proxy/team/pushed:1.0" >/dev/null
if docker image inspect "$proxy/team/pushed:1.0" >/dev/null 2>&1; then fail "docker rmi left the image"; fi
docker pull -q "$proxy/team/pushed:1.0" >/dev/null
got=$(docker image inspect -f '{{index .RepoDigests 0}}' "$proxy/team/pushed:1.0")
[ "$got" = "$proxy/team/pushed@$pushed" ] || fail "pulled $got, pushed $pushed"
cid=$(docker create "$proxy/team/pushed:1.0" /hello.txt)
content=$(docker cp "$cid:/hello.txt" - | tar -xO)
docker rm "$cid" >/dev/null
[ "$content" = "$marker" ] || fail "the pulled image holds '$content'"
ok "docker pull after docker rmi: same digest, same file"

step "ctr images pull through the proxy as a mirror (hosts.toml)"
# The registry's own name is the emulator's address; the proxy is its
# mirror, as docs/operating.md configures containerd for ECR. containerd
# falls back to the registry itself only if the mirror fails, and the
# emulator refuses it (no credentials): success means the proxy served it.
ecr_host=${ECR#http://}
mkdir -p "$work/certs.d/$ecr_host"
cat >"$work/certs.d/$ecr_host/hosts.toml" <<EOF
server = "$ECR"

[host."https://$proxy"]
  capabilities = ["pull", "resolve"]
  ca = "$reg/certificate.pem"
EOF
code=$(curl -s -o /dev/null -w '%{http_code}' "$ECR/v2/team/app/manifests/1.0")
[ "$code" = 401 ] || fail "the emulator answers an anonymous pull with $code, not 401"
ok "the registry itself refuses containerd (no credentials): 401"
# The gateway's request lines (one per manifest and blob read).
reads() { docker logs "$name" 2>&1 | grep 'component=gateway' | grep -c 'path=/v2/team/' || true; }
before=$(reads)
for ref in team/pushed:1.0 team/app:1.0; do
  ctr images pull --hosts-dir "$work/certs.d" --snapshotter native "$ecr_host/$ref" >"$work/ctr-pull.log" 2>&1 ||
    { cat "$work/ctr-pull.log"; fail "ctr images pull $ecr_host/$ref"; }
  ok "ctr images pull $ecr_host/$ref: $(ctr images ls -q | grep -c "^$ecr_host/$ref\$") image, $(ctr images ls | awk -v r="$ecr_host/$ref" '$1 == r { print $3 }')"
done
# (docker logs may lag a moment behind the container's output.)
served() { [ "$(reads)" -gt "$before" ]; }
wait_for 10 "the proxy logs containerd's reads" served
ok "the proxy's request log shows containerd's reads"

step "a read-only cache mount stops the proxy with a message"
mkdir -p "$reg/ro-cache"
rc=0
timeout 60 "$DOCKER_CLI" --host "unix://$work/docker.sock" run --name "$name-ro" --net=host -v "$reg/ro-cache:/cache:ro" \
  -e PORT="$(free_port)" -e ECR="$ECR" -e AWS_REGION -e AWS_EC2_METADATA_DISABLED \
  "$image" >"$work/ro.log" 2>&1 || rc=$?
[ $rc != 0 ] || fail "the proxy started on a read-only cache"
grep -q 'read-only' "$work/ro.log" || { cat "$work/ro.log"; fail "no word of the read-only mount"; }
ok "exit $rc: $(grep -o 'Error: .*' "$work/ro.log" | cut -c1-160)…"

step "the image's HEALTHCHECK"
healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$name")" = healthy ]; }
# The first check runs one interval (30s) after the start.
wait_for 120 "docker reports the container healthy" healthy
ok "healthy $((SECONDS - started))s after docker run"

step "stopping"
docker stop -t 40 "$name" >/dev/null
[ "$(docker inspect -f '{{.State.ExitCode}}' "$name")" = 0 ] || fail "the proxy exited with $(docker inspect -f '{{.State.ExitCode}}' "$name")"
ok "docker stop: the proxy exited 0"
# distribution logs every 4xx answer at level error ("response completed
# with error"), such as the 404s of docker push asking for blobs ECR
# lacks; anything else at that level is a failure.
errors=$(docker logs "$name" 2>&1 | grep 'level=error' | grep -v 'msg="response completed with error"' || true)
[ -z "$errors" ] || { echo "$errors" | head -n 5; fail "the proxy logged errors"; }
ok "no error in the proxy's log"

step "engines OK in ${SECONDS}s"

#!/usr/bin/env bash
# The project's tests: formatting, go vet, golangci-lint, every package's
# tests with the race detector, a bounded run of each fuzz target, the
# deployment manifests, the benchmark's smoke run, the OCI distribution-spec
# conformance suite against the proxy in front of the ECR emulator, and the
# container image (lint, build, proof). Needs Go, Node.js (npx) and, as root
# on Debian, installs the packages it lacks; Go tools at pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."

GOLANGCI_LINT_VERSION=v2.15.0
FUZZTIME=${FUZZTIME:-10s}

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the tests use: skopeo is a real client in the end-to-end
# tests; buildah, jq, iproute2 and file build and
# prove the container image; nginx with the seed's Lua modules is what the
# benchmark's smoke run compares with; redis-server is the shared index and
# leases of the scaled-out tests. Installed when missing (as root).
packages=(buildah jq iproute2 file skopeo nginx libnginx-mod-http-lua libnginx-mod-http-set-misc lua-cjson redis-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "these Debian packages are needed: ${missing[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The S3-compatible server of the scaled-out tests (internal/enginetest).
GOFAKES3_VERSION=v1.2.0
if ! [ -x "$(go env GOPATH)/bin/gofakes3" ]; then
  step "installing gofakes3 $GOFAKES3_VERSION"
  go install "github.com/johannesboyne/gofakes3/cmd/gofakes3@$GOFAKES3_VERSION"
fi

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted"
  exit 1
fi

step "go vet"
go vet ./...

step "golangci-lint $GOLANGCI_LINT_VERSION"
lint="$(go env GOPATH)/bin/golangci-lint"
if ! "$lint" version 2>/dev/null | grep -q "${GOLANGCI_LINT_VERSION#v}"; then
  go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
fi
"$lint" run ./...

step "go test -race (storage-driver conformance suite in -short mode)"
go test -race -short -count=1 -timeout 20m ./...

step "fuzz targets, $FUZZTIME each"
while read -r pkg dir; do
  targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' || true)
  for target in $targets; do
    echo "--- $pkg $target"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
  done
done < <(go list -f '{{.ImportPath}} {{.Dir}}' ./...)

step "deployment manifests (offline: strict decoding with k8s.io/api)"
(cd deploy/validate && go vet ./... && go test -count=1 ./...)

step "benchmark smoke run"
go run ./bench -smoke

step "cluster benchmark smoke run (three replicas, S3 and Redis)"
go run ./bench/cluster -smoke

step "OCI distribution-spec conformance: pull and discovery on content preloaded in the emulated ECR"
go run ./conformance -categories pull,discovery

step "OCI distribution-spec conformance: every category, pushing through the proxy"
go run ./conformance -categories all

step "OCI distribution-spec conformance: every category through a registry prefix (ecr.registries, auth.Router)"
go run ./conformance -categories all -prefix shared

step "Dockerfile lint"
./scripts/dockerfile-lint.sh

step "container image (buildah, scratch): build and prove"
image_dir=$(mktemp -d /var/tmp/ecr-proxy-archive.XXXXXX)
ARCHIVE="$image_dir/ecr-proxy.tar" ./scripts/image.sh

step "the image in docker and containerd: the seed's docker run line, pulls, a push, a mirror, the health check"
IMAGE_ARCHIVE="$image_dir/ecr-proxy.tar" ./scripts/engines.sh
rm -rf "$image_dir"

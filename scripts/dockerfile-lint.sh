#!/usr/bin/env bash
# Lints Dockerfile with dockerfile-utils (the linter behind VS Code's
# Dockerfile support: unknown instructions and flags, bad EXPOSE/HEALTHCHECK
# values, duplicate CMD/ENTRYPOINT/HEALTHCHECK, deprecated and misplaced
# instructions, casing). Fails on any diagnostic, warnings included. Needs
# Node.js and npm; fetches the pinned version from the npm registry once.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKERFILE_UTILS_VERSION=0.16.3

out=$(npx --yes "dockerfile-utils@$DOCKERFILE_UTILS_VERSION" lint "${1:-Dockerfile}" 2>&1) || true
if [ -n "$out" ]; then
  printf '%s\n' "$out"
  echo "dockerfile-lint: FAIL: ${1:-Dockerfile} has findings (dockerfile-utils $DOCKERFILE_UTILS_VERSION)" >&2
  exit 1
fi
echo "dockerfile-lint: ${1:-Dockerfile} OK (dockerfile-utils $DOCKERFILE_UTILS_VERSION)"

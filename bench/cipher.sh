#!/usr/bin/env bash
# Benchmark: what encryption at rest costs. pgkeep with cipher = none vs aes-256-gcm, beside
# pgBackRest 2.45 without a cipher vs repo1-cipher-type=aes-256-cbc, in one run, on one
# PostgreSQL 15 (pgbench), local repositories, zstd level 1 for every tool:
#   - archive-push p50 / p95 ms of one 16 MiB segment per call (sync, nothing pushed ahead),
#   - full backup MB/s, restore MB/s (files only), bytes stored.
# Every call is timed as a whole process with /usr/bin/time. Everything listens on 127.0.0.1
# and is removed at the end.
#   PGKEEP_BENCH_SCALE     pgbench scale (default 30, about 450 MB)
#   PGKEEP_BENCH_SEGMENTS  segments pushed per tool and cipher (default 24)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --bench
. scripts/env.sh
cargo build --release --quiet --bin pgkeep
PGKEEP=$CARGO_TARGET_DIR/release/pgkeep
PGBIN=$PGKEEP_TEST_PG_BIN
SCALE=${PGKEEP_BENCH_SCALE:-30}
NSEG=${PGKEEP_BENCH_SEGMENTS:-24}
LEVEL=1
PASS="bench passphrase $(date +%s%N)"

W=$(mktemp -d /tmp/pgkeep-bench-cipher-XXXXXX)
chown postgres:postgres "$W"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  [ -f "$W/pgdata/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
psql_() { psql -h "$W" -p "$PORT" -U postgres -XAtq "$@" postgres; }
# Runs a command as postgres; appends "seconds peak_kib" to file $1 (wall time measured in
# nanoseconds around the call: /usr/bin/time's %e has 10 ms steps; RSS from /usr/bin/time).
timed() {
  local out=$1; shift; local t0 t1
  t0=$(date +%s%N)
  as_pg /usr/bin/time -f "%M" -o "$W/last.rss" "$@" >"$W/last.out" 2>"$W/last.err" || { cat "$W/last.err" >&2; exit 1; }
  t1=$(date +%s%N)
  echo "$(python3 -c "print(($t1-$t0)/1e9)") $(cat "$W/last.rss")" >> "$out"
}
last_s() { tail -1 "$1" | cut -d' ' -f1; }
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR-1)*p/100)+1; printf "%.1f", a[i]*1000}'; }
mbps() { python3 -c "print(f'{$1/1e6/$2:.0f}')"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }

echo "$PASS" > "$W/pass"; chmod 600 "$W/pass"
head -c 48 /dev/urandom | base64 > "$W/key"; chmod 600 "$W/key"
pk_conf() { # name cipher-lines
  cat > "$W/pk-$1.toml" <<CONF
[repository]
path = "$W/repo-pk-$1"
$2
[archive]
compress_level = $LEVEL
push_lookahead = 0
[backup]
concurrency = 2
wal_timeout = "600s"
CONF
}
pk_conf none ""
pk_conf aes "cipher = \"aes-256-gcm\"
cipher_key_file = \"$W/key\""
pk_conf aespass "cipher = \"aes-256-gcm\"
cipher_pass_file = \"$W/pass\""
pb_conf() { # name cipher-lines
  cat > "$W/pb-$1.conf" <<CONF
[global]
repo1-path=$W/repo-pb-$1
$2
compress-type=zst
compress-level=$LEVEL
process-max=2
start-fast=y
archive-async=n
lock-path=$W/pb-lock-$1
log-level-console=warn
log-level-stderr=off
log-level-file=off
[bench]
pg1-path=$W/pgdata
pg1-port=$PORT
pg1-socket-path=$W
CONF
  mkdir -p "$W/pb-lock-$1"
}
pb_conf none ""
pb_conf cbc "repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$PASS"
chown -R postgres:postgres "$W"

echo "== PostgreSQL 15 archiving into all four repositories; pgbench -i -s $SCALE" >&2
as_pg "$PGBIN/initdb" -A trust -U postgres --no-sync -D "$W/pgdata" >/dev/null
pk() { echo "PGKEEP_CONFIG=$W/pk-$1.toml $PGKEEP archive-push %p"; }
pbp() { echo "pgbackrest --config=$W/pb-$1.conf --stanza=bench archive-push %p"; }
cat >> "$W/pgdata/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$W'
max_wal_size = '4GB'
archive_mode = on
archive_command = '$(pk none) && $(pk aes) && $(pbp none) && $(pbp cbc)'
CONF
for c in none aes aespass; do as_pg env PGKEEP_CONFIG="$W/pk-$c.toml" "$PGKEEP" init --data-dir "$W/pgdata" >/dev/null; done
as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -l "$W/pg.log" -w start >/dev/null
for c in none cbc; do as_pg pgbackrest --config="$W/pb-$c.conf" --stanza=bench stanza-create >/dev/null; done
pgbench -h "$W" -p "$PORT" -U postgres -i -s "$SCALE" -q postgres >/dev/null 2>&1
psql_ -c CHECKPOINT
BYTES=$(du -sb --exclude=pg_wal "$W/pgdata" | cut -f1)
echo "   data directory without pg_wal: $((BYTES / 1048576)) MiB" >&2

echo "== archive-push: $NSEG real segments, one call each, into fresh repositories" >&2
# Real segments as archived (pg_wal holds recycled files under future names), fetched back
# from the clear repository, pushed into second repositories of each kind so that nothing is
# "already stored".
mkdir -p "$W/segs"; chown postgres:postgres "$W/segs"
for s in $(find "$W/repo-pk-none/main/wal" -type f -name '????????????????????????' -printf '%f\n' | sort | head -n "$NSEG"); do
  as_pg env PGKEEP_CONFIG="$W/pk-none.toml" "$PGKEEP" archive-get "$s" "$W/segs/$s"
done
[ "$(ls "$W/segs" | wc -l)" -ge 4 ] || { echo "too few archived segments: $(ls "$W/segs" | wc -l)" >&2; exit 1; }
for c in none aes aespass; do
  sed "s#repo-pk-$c\"#repo-pk-push-$c\"#" "$W/pk-$c.toml" > "$W/pkp-$c.toml"
  as_pg env PGKEEP_CONFIG="$W/pkp-$c.toml" "$PGKEEP" init --data-dir "$W/pgdata" >/dev/null
done
for c in none cbc; do
  sed -e "s#repo-pb-$c#repo-pb-push-$c#" -e "s#pb-lock-$c#pb-lock-push-$c#" "$W/pb-$c.conf" > "$W/pbp-$c.conf"
  mkdir -p "$W/pb-lock-push-$c"; chown postgres:postgres "$W/pb-lock-push-$c"
  as_pg pgbackrest --config="$W/pbp-$c.conf" --stanza=bench stanza-create >/dev/null
done
for s in $(ls "$W/segs"); do
  timed "$W/t-push-pk-none" env PGKEEP_CONFIG="$W/pkp-none.toml" "$PGKEEP" archive-push "$W/segs/$s"
  timed "$W/t-push-pk-aes" env PGKEEP_CONFIG="$W/pkp-aes.toml" "$PGKEEP" archive-push "$W/segs/$s"
  timed "$W/t-push-pk-aespass" env PGKEEP_CONFIG="$W/pkp-aespass.toml" "$PGKEEP" archive-push "$W/segs/$s"
  timed "$W/t-push-pb-none" pgbackrest --config="$W/pbp-none.conf" --stanza=bench archive-push "$W/segs/$s"
  timed "$W/t-push-pb-cbc" pgbackrest --config="$W/pbp-cbc.conf" --stanza=bench archive-push "$W/segs/$s"
done

echo "== full backups" >&2
SRC="host=$W port=$PORT user=postgres"
for c in none aes; do timed "$W/t-full-pk-$c" env PGKEEP_CONFIG="$W/pk-$c.toml" "$PGKEEP" backup --source "$SRC" --type full; done
for c in none cbc; do timed "$W/t-full-pb-$c" pgbackrest --config="$W/pb-$c.conf" --stanza=bench --type=full backup; done
as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -m fast -w stop >/dev/null

echo "== restores (files only)" >&2
for c in none aes; do timed "$W/t-rest-pk-$c" env PGKEEP_CONFIG="$W/pk-$c.toml" "$PGKEEP" restore "$W/r-pk-$c"; done
for c in none cbc; do
  mkdir -p "$W/r-pb-$c"; chown postgres:postgres "$W/r-pb-$c"; chmod 700 "$W/r-pb-$c"
  timed "$W/t-rest-pb-$c" pgbackrest --config="$W/pb-$c.conf" --stanza=bench --pg1-path="$W/r-pb-$c" restore
done
stored() { du -sb "$1" | cut -f1; }

p50() { cut -d' ' -f1 "$1" | pct 50; }
p95() { cut -d' ' -f1 "$1" | pct 95; }
echo
echo "pgbench scale $SCALE: $((BYTES / 1048576)) MiB data directory, $NSEG segments pushed, zstd level $LEVEL, 2 cores, local repositories"
printf "%-34s %10s %10s %8s %12s %12s %8s\n" "metric" "pgkeep" "pgkeep" "cost" "pgBackRest" "pgBackRest" "cost"
printf "%-34s %10s %10s %8s %12s %12s %8s\n" "" "none" "aes-gcm" "" "none" "aes-cbc" ""
echo "(pgkeep aes-gcm with a key file; the passphrase row adds Argon2id, 19 MiB, 2 passes, per process)"
row() { printf "%-34s %10s %10s %8s %12s %12s %8s\n" "$@"; }
cost() { python3 -c "print(f'{100*($2-$1)/$1:+.0f}%')"; }
a=$(p50 "$W/t-push-pk-none"); b=$(p50 "$W/t-push-pk-aes"); c=$(p50 "$W/t-push-pb-none"); d=$(p50 "$W/t-push-pb-cbc")
row "archive-push p50 ms" "$a" "$b" "$(cost "$a" "$b")" "$c" "$d" "$(cost "$c" "$d")"
a=$(p95 "$W/t-push-pk-none"); b=$(p95 "$W/t-push-pk-aes"); c=$(p95 "$W/t-push-pb-none"); d=$(p95 "$W/t-push-pb-cbc")
row "archive-push p95 ms" "$a" "$b" "$(cost "$a" "$b")" "$c" "$d" "$(cost "$c" "$d")"
a=$(p50 "$W/t-push-pk-none"); b=$(p50 "$W/t-push-pk-aespass")
row "archive-push p50 ms, passphrase" "$a" "$b" "$(cost "$a" "$b")" "" "" ""
a=$(mbps "$BYTES" "$(last_s "$W/t-full-pk-none")"); b=$(mbps "$BYTES" "$(last_s "$W/t-full-pk-aes")")
c=$(mbps "$BYTES" "$(last_s "$W/t-full-pb-none")"); d=$(mbps "$BYTES" "$(last_s "$W/t-full-pb-cbc")")
row "full backup MB/s" "$a" "$b" "$(cost "$b" "$a")" "$c" "$d" "$(cost "$d" "$c")"
a=$(mbps "$BYTES" "$(last_s "$W/t-rest-pk-none")"); b=$(mbps "$BYTES" "$(last_s "$W/t-rest-pk-aes")")
c=$(mbps "$BYTES" "$(last_s "$W/t-rest-pb-none")"); d=$(mbps "$BYTES" "$(last_s "$W/t-rest-pb-cbc")")
row "restore MB/s" "$a" "$b" "$(cost "$b" "$a")" "$c" "$d" "$(cost "$d" "$c")"
a=$(stored "$W/repo-pk-none/main/backups"); b=$(stored "$W/repo-pk-aes/main/backups")
c=$(stored "$W/repo-pb-none/backup"); d=$(stored "$W/repo-pb-cbc/backup")
row "full stored MiB" "$((a / 1048576))" "$((b / 1048576))" "$(cost "$a" "$b")" "$((c / 1048576))" "$((d / 1048576))" "$(cost "$c" "$d")"
echo "(cost: time added by the cipher, i.e. + means slower; pgkeep none vs pgBackRest none is in bench/backup.sh)"

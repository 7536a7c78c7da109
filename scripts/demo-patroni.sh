#!/usr/bin/env bash
# pgkeep in a local three-node Patroni cluster (PostgreSQL 15, etcd, all on 127.0.0.1): every
# node archives through pgkeep; a backup is read from the replica Patroni ranks best; the
# leader is killed and the next backup follows the new topology with no configuration change;
# a wiped member is rebuilt from the repository by `pgkeep create-replica`. Prints what
# happened with times. Run by `PGKEEP_DEMO_PATRONI=1 bash scripts/demo.sh`, or alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --patroni
. scripts/env.sh
cargo build --release --quiet -p pgkeep --bins
PGKEEP=$CARGO_TARGET_DIR/release/pgkeep
PGBIN=${PGKEEP_TEST_PG_BIN}

work=$(mktemp -d /tmp/pgkeep-demo-patroni-XXXXXX)
chown postgres:postgres "$work"
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "$work"/n?; do
    [ -f "$d/postmaster.pid" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap stop_all EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ms() { date +%s%3N; }
cluster_json() { python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$1/cluster', timeout=2).read().decode())" 2>/dev/null || echo '{}'; }
# The leader's name (or -) and how many replicas stream, ignoring member $1 (a dead one is
# still listed until its key expires), from any node's REST API.
health() {
  for a in "${API[@]}"; do
    cluster_json "$a" | python3 -c '
import json, sys
c = json.load(sys.stdin); m = [x for x in c.get("members", []) if x["name"] != sys.argv[1]]
l = [x["name"] for x in m if x["role"] == "leader" and x.get("state") == "running"]
r = [x for x in m if x["role"] != "leader" and x.get("state") in ("running", "streaming") and isinstance(x.get("lag"), int)]
sys.exit(1) if not c.get("members") else print((l[0] if l else "-"), len(r))' "$1" && return
  done
  echo "- 0"
}
wait_health() { # replicas [member to ignore]
  for _ in $(seq 1 600); do
    read -r leader n <<<"$(health "${2:-none}")"
    if [ "$leader" != - ] && [ "$n" -ge "$1" ]; then echo "$leader"; return; fi
    sleep 0.2
  done
  echo "cluster not healthy; see $work/*.log" >&2; exit 1
}

EP=$(free_port); EPEER=$(free_port)
etcd --name e1 --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$EP" \
  --advertise-client-urls "http://127.0.0.1:$EP" --listen-peer-urls "http://127.0.0.1:$EPEER" \
  --initial-advertise-peer-urls "http://127.0.0.1:$EPEER" --initial-cluster "e1=http://127.0.0.1:$EPEER" \
  >/dev/null 2>"$work/etcd.log" &
pids+=($!)

API=(); PGP=()
for i in 1 2 3; do API+=("$(free_port)"); PGP+=("$(free_port)"); done
cat > "$work/pgkeep.toml" <<TOML
[repository]
path = "$work/repo"
[backup]
source = "patroni"
[patroni]
endpoints = ["http://127.0.0.1:${API[0]}", "http://127.0.0.1:${API[1]}", "http://127.0.0.1:${API[2]}"]
conninfo = "user=postgres"
[create_replica]
max_wal_percent = 1000
TOML
for i in 0 1 2; do
  n="n$((i + 1))"
  mkdir -p "$work/sock-$n"
  cat > "$work/$n.yml" <<YML
scope: pgkeep-demo
name: $n
restapi: {listen: 127.0.0.1:${API[$i]}, connect_address: 127.0.0.1:${API[$i]}}
etcd3: {hosts: 127.0.0.1:$EP}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    postgresql:
      parameters:
        wal_level: replica
        archive_mode: 'on'
        archive_command: 'PGKEEP_CONFIG=$work/pgkeep.toml $PGKEEP archive-push %p'
        archive_timeout: 10
  initdb: [{encoding: UTF8}]
  pg_hba: [local all all trust, host all all 127.0.0.1/32 trust, host replication all 127.0.0.1/32 trust]
postgresql:
  listen: 127.0.0.1:${PGP[$i]}
  connect_address: 127.0.0.1:${PGP[$i]}
  data_dir: $work/$n
  bin_dir: $PGBIN
  pgpass: $work/pgpass-$n
  authentication: {superuser: {username: postgres, password: postgres}, replication: {username: postgres, password: postgres}}
  parameters: {unix_socket_directories: '$work/sock-$n'}
  create_replica_methods: [pgkeep, basebackup]
  pgkeep: {command: '$PGKEEP --config $work/pgkeep.toml create-replica', keep_data: false}
  basebackup: {checkpoint: fast}
  recovery_conf: {restore_command: 'PGKEEP_CONFIG=$work/pgkeep.toml $PGKEEP archive-get %f %p'}
YML
done
chown -R postgres:postgres "$work"
# setpriv execs Patroni itself (runuser would stay its parent): $! is Patroni's pid.
start_node() {
  setpriv --reuid=postgres --regid=postgres --init-groups env HOME=/tmp patroni "$work/$1.yml" >>"$work/$1.log" 2>&1 &
  pids+=($!); eval "pid_$1=$!"
}
psql_n() { local i=$1; shift; psql -h "$work/sock-n$i" -p "${PGP[$((i - 1))]}" -U postgres -XAtq "$@"; }

echo "== 1. a three-node Patroni cluster archiving through pgkeep"
t0=$(ms)
start_node n1
wait_health 0 >/dev/null
PGKEEP_CONFIG=$work/pgkeep.toml "$PGKEEP" init --data-dir "$work/n1" >/dev/null
chown -R postgres:postgres "$work/repo"
start_node n2; start_node n3
wait_health 2 >/dev/null
t1=$(ms)
psql_n 1 -c "CREATE TABLE marks (id int PRIMARY KEY)"
psql_n 1 -c "INSERT INTO marks SELECT generate_series(1, 100)"

echo "== 2. a backup from the replica Patroni ranks best"
PGKEEP_CONFIG=$work/pgkeep.toml "$PGKEEP" backup
src1=$(PGKEEP_CONFIG=$work/pgkeep.toml "$PGKEEP" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][-1]["source"])')

echo "== 3. kill -9 of the leader (n1) while WAL is archived"
psql_n 1 -c "INSERT INTO marks SELECT generate_series(101, 200)"
psql_n 1 -c "SELECT pg_switch_wal()" >/dev/null
pm=$(head -1 "$work/n1/postmaster.pid")
tk=$(ms)
kill -9 "$pid_n1" "$pm"
leader=$(wait_health 1 n1)
tf=$(ms)
i=${leader#n}
until [ "$(psql_n "$i" -c "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ]; do sleep 0.1; done
psql_n "$i" -c "INSERT INTO marks SELECT generate_series(201, 300)"
psql_n "$i" -c "SELECT pg_switch_wal()" >/dev/null
until ls "$work"/repo/main/wal/00000002*/0000000200* >/dev/null 2>&1; do sleep 0.1; done
ta=$(ms)
PGKEEP_CONFIG=$work/pgkeep.toml "$PGKEEP" backup
src2=$(PGKEEP_CONFIG=$work/pgkeep.toml "$PGKEEP" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][-1]["source"])')

echo "== 4. n1 wiped and rebuilt by Patroni through pgkeep create-replica"
rm -rf "$work/n1"
tr0=$(ms)
start_node n1
wait_health 2 >/dev/null
tr1=$(ms)
grep -q "replica has been created using pgkeep" "$work/n1.log" || { echo "n1 was not created by pgkeep"; tail -20 "$work/n1.log"; exit 1; }
for _ in $(seq 1 300); do
  rows=$(psql_n 1 -c "SELECT count(*) FROM marks" 2>/dev/null || echo 0)
  [ "$rows" = 300 ] && break
  sleep 0.2
done

echo
echo "== pgkeep + Patroni demo: what happened"
printf "  %-48s %s\n" "cluster of three up (leader + 2 replicas)" "$((t1 - t0)) ms"
printf "  %-48s %s\n" "first backup read from" "$src1"
printf "  %-48s %s\n" "leader killed: new leader" "$leader after $((tf - tk)) ms"
printf "  %-48s %s\n" "first timeline-2 segment archived after kill" "$((ta - tk)) ms"
printf "  %-48s %s\n" "next backup (no configuration change) read from" "$src2"
printf "  %-48s %s\n" "n1 rebuilt from the repository and streaming" "$((tr1 - tr0)) ms"
printf "  %-48s %s\n" "rows on the rebuilt n1" "$rows (of 300)"
case "$src1/$src2" in
  n1*|*/$leader*) echo "  RESULT: a backup was read from the leader"; exit 1 ;;
esac
[ "$rows" = 300 ] || { echo "  RESULT: MISMATCH"; exit 1; }
echo "  RESULT: backups from replicas across a failover; the rebuilt member holds every row"

#!/usr/bin/env bash
# Runs the Compose stack of config/stack/ for real with podman-compose, every port on
# 127.0.0.1, and walks through what an operator relies on, timing each step:
#   1. images (pgkeep from the top-level Dockerfile, then the node, etcd, HAProxy and Garage
#      images of config/stack/images/), built offline, each only when missing;
#   2. random secrets, the stack up, Garage's keys and bucket, a leader elected;
#   3. `pgkeep init`, rows written through HAProxy :5000, WAL archived through pgkeepd;
#   4. a full backup from the replica Patroni ranks best; `pgkeepd check` passing every line;
#   5. the leader's container killed: a new leader, writes through HAProxy again, WAL archived on
#      the new timeline, an incremental backup on the new topology, the committed rows all there;
#   6. a replica's container and volume removed and recreated: Patroni rebuilds it with
#      `pgkeep create-replica`;
#   7. a restore test in a throwaway container (pgkeepd restore-test), then no sandbox left;
#   8. teardown (containers, volumes, network, secrets), also on failure.
#   bash scripts/stack.sh                    the whole run
#   PGKEEP_STACK_KEEP=1 bash scripts/stack.sh  leave the stack up at the end, or where it failed (teardown:
#                                              podman-compose -p pgkeep-stack -f config/stack/compose.yml down -v)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/install-deps.sh --stack
. scripts/env.sh
log() { echo "stack: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
step_start=0
step() { step_start=$(date +%s%3N); log "-- $*"; }
took() { local now; now=$(date +%s%3N); log "   $1: $((now - step_start))ms"; TIMES+=("$1|$((now - step_start))"); step_start=$now; }
TIMES=()
podman() { command podman --runtime /usr/sbin/runc "$@"; }
PROJECT=pgkeep-stack
compose() { timeout 300 podman-compose -p "$PROJECT" --podman-args "--runtime /usr/sbin/runc" -f config/stack/compose.yml "$@"; }
c() { echo "${PROJECT}_$1_1"; }

for port in "${PGKEEP_STACK_PRIMARY_PORT:-5000}" "${PGKEEP_STACK_REPLICA_PORT:-5001}" \
  "${PGKEEP_STACK_HAPROXY_STATS_PORT:-7000}" "${PGKEEP_STACK_PGKEEPD_PORT:-9187}"; do
  if python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',int(sys.argv[1])))" "$port" 2>/dev/null; then :; else
    die "127.0.0.1:$port is taken; set PGKEEP_STACK_PRIMARY_PORT / _REPLICA_PORT / _HAPROXY_STATS_PORT / _PGKEEPD_PORT"
  fi
done
if podman container exists "$(c pgkeepd)" 2>/dev/null; then
  die "a $PROJECT stack already runs; remove it: podman-compose -p $PROJECT -f config/stack/compose.yml down -v"
fi

work=$(mktemp -d /var/tmp/pgkeep-stack.XXXXXX)
export PGKEEP_STACK_SECRETS=$work/secrets PGKEEP_ENGINE_SOCKET=$work/podman.sock PGKEEP_ENGINE_SOCKET_GID=0
service_pid=""
teardown() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    log "last lines of each container's log:"
    for s in pg1 pg2 pg3 pgkeepd garage haproxy etcd1; do
      echo "--- $s" >&2; podman logs --tail 15 "$(c $s)" >&2 2>&1 || true
    done
  fi
  if [ -n "${PGKEEP_STACK_KEEP:-}" ]; then
    log "left running (PGKEEP_STACK_KEEP): the stack, the engine socket's podman service (pid $service_pid) and the secrets in $work/secrets"
    return
  fi
  step "teardown"
  timeout 180 podman-compose -p "$PROJECT" --podman-args "--runtime /usr/sbin/runc" -f config/stack/compose.yml down -v -t 10 >"$work/down.log" 2>&1 \
    || log "compose down failed or took over 3 minutes: $work/down.log"
  for v in etcd1 etcd2 etcd3 pg1 pg2 pg3 garage pgkeepd; do podman volume rm -f "${PROJECT}_$v" >/dev/null 2>&1 || true; done
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
  podman ps -a --filter label=pgkeep.restore-test --format '{{.Names}}' | xargs -r podman rm -f >/dev/null 2>&1 || true
  if [ -n "$service_pid" ]; then kill "$service_pid" 2>/dev/null || true; fi
  took "teardown"
  rm -rf "$work"
  exit "$rc"
}
trap teardown EXIT

# wait_for WHAT SECONDS COMMAND...: runs COMMAND every half second until it succeeds; past the
# deadline, fails naming what it waited for and COMMAND's last output.
wait_for() {
  local what=$1 limit=$2; shift 2
  local end=$(( $(date +%s) + limit )) out=""
  while :; do
    if out=$("$@" 2>&1); then printf '%s' "$out"; return 0; fi
    [ "$(date +%s)" -ge "$end" ] && die "waited ${limit}s for $what; last saw: $(echo "$out" | tail -n 3)"
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------
step "images"
bash scripts/sandbox-image.sh 15 >/dev/null
if ! podman image exists localhost/pgkeep:dev || [ -n "${PGKEEP_STACK_REBUILD:-}" ]; then
  PGKEEP_IMAGE=localhost/pgkeep:dev bash scripts/image.sh
fi
ctx=$work/context
mkdir -p "$ctx"
cp config/stack/images/* "$ctx/"
cp "$TOOLS/bin/garage" "$ctx/garage"
for img in node etcd haproxy garage; do
  if ! podman image exists "localhost/pgkeep-stack-$img:dev" || [ -n "${PGKEEP_STACK_REBUILD:-}" ]; then
    log "building localhost/pgkeep-stack-$img:dev"
    timeout 20m podman build --format docker --pull=never --network host -q \
      -t "localhost/pgkeep-stack-$img:dev" -f "$ctx/$img.Dockerfile" "$ctx" >"$work/build-$img.log" 2>&1 \
      || { tail -n 30 "$work/build-$img.log" >&2; die "podman build of $img.Dockerfile (log above)"; }
  fi
done
took "images"

# The Swarm flavour declares what the Compose one does.
/usr/bin/python3 - <<'PY' || die "config/stack/swarm.yml and compose.yml disagree (above)"
import yaml, sys
c = yaml.safe_load(open("config/stack/compose.yml")); s = yaml.safe_load(open("config/stack/swarm.yml"))
for key in ("services", "secrets", "volumes"):
    if set(c[key]) != set(s[key]):
        sys.exit(f"{key}: compose {sorted(c[key])} swarm {sorted(s[key])}")
for name, svc in c["services"].items():
    if svc.get("image") != s["services"][name].get("image") or set(svc.get("secrets", [])) != {x if isinstance(x, str) else x["source"] for x in s["services"][name].get("secrets", [])}:
        sys.exit(f"service {name} differs in image or secrets")
PY

# ---------------------------------------------------------------------------------------------
step "secrets, engine socket, stack up"
hex() { python3 -c "import secrets,sys; print(secrets.token_hex(int(sys.argv[1])))" "$1"; }
write_secrets() {
  local s=$PGKEEP_STACK_SECRETS
  mkdir -p "$s" && chmod 700 "$s"
  hex 24 >"$s/pg_superuser_password"
  hex 24 >"$s/pg_replication_password"
  hex 32 >"$s/pgkeep_wal_token"
  hex 32 >"$s/garage_rpc_secret"
  # libpq's password file: pgkeepd connects as the replication role.
  printf '*:*:*:replicator:%s\n' "$(cat "$s/pg_replication_password")" >"$s/pgkeepd_pgpass"
  # Garage key ids are GK + 24 hex digits, secrets 64 hex digits; AWS's credentials format.
  RW_ID="GK$(hex 12)"; RW_SECRET=$(hex 32); RO_ID="GK$(hex 12)"; RO_SECRET=$(hex 32)
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$RW_ID" "$RW_SECRET" >"$s/s3_pgkeepd_credentials"
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$RO_ID" "$RO_SECRET" >"$s/s3_node_credentials"
  # Bind-mounted as they are (podman-compose has no uid/mode for secrets), so owner and mode
  # are set here: 0400 everywhere (Garage refuses a readable secret); pgkeepd's own owned by
  # the image's uid 10001; the nodes' entry point (root) copies theirs for postgres.
  chmod 400 "$s"/*
  chown 10001 "$s/s3_pgkeepd_credentials" "$s/pgkeep_wal_token" "$s/pgkeepd_pgpass"
}
write_secrets
podman system service --time=0 "unix://$PGKEEP_ENGINE_SOCKET" >"$work/podman-service.log" 2>&1 &
service_pid=$!
wait_for "the engine socket $PGKEEP_ENGINE_SOCKET" 30 curl -fsS --max-time 2 --unix-socket "$PGKEEP_ENGINE_SOCKET" http://d/_ping >/dev/null
chmod 660 "$PGKEEP_ENGINE_SOCKET"
compose up -d etcd1 etcd2 etcd3 garage >"$work/up.log" 2>&1 || { tail -n 30 "$work/up.log" >&2; die "compose up (etcd, garage)"; }
garage() { timeout 30 podman exec "$(c garage)" garage -c /etc/garage.toml "$@"; }
wait_for "Garage to answer" 60 garage status >/dev/null
node=$(garage node id -q | cut -d@ -f1)
garage layout assign -z dc1 -c 10G "$node" >/dev/null
garage layout apply --version 1 >/dev/null
garage key import --yes -n pgkeepd "$RW_ID" "$RW_SECRET" >/dev/null
garage key import --yes -n nodes "$RO_ID" "$RO_SECRET" >/dev/null
wait_for "Garage's bucket" 60 garage bucket create pgkeep >/dev/null
garage bucket allow --read --write --owner pgkeep --key pgkeepd >/dev/null
garage bucket allow --read pgkeep --key nodes >/dev/null
compose up -d >>"$work/up.log" 2>&1 || { tail -n 30 "$work/up.log" >&2; die "compose up"; }
took "stack up"

# ---------------------------------------------------------------------------------------------
# The cluster as Patroni's REST API reports it, from any running node: "leader replicas" where
# replicas counts the members streaming with a known lag on the leader's timeline.
cluster() {
  local n
  for n in pg1 pg2 pg3; do
    podman exec "$(c $n)" curl -fsS --max-time 2 http://127.0.0.1:8008/cluster 2>/dev/null && return 0
  done
  return 1
}
health() { # WANT_REPLICAS [EXCLUDED_MEMBER [MIN_TIMELINE]]
  cluster | python3 -c '
import json, sys
c = json.load(sys.stdin); m = [x for x in c["members"] if x["name"] != sys.argv[2]]
l = [x for x in m if x["role"] == "leader" and x["state"] == "running"]
tl = l[0].get("timeline") if l else None
r = [x["name"] for x in m if x["role"] != "leader" and x["state"] in ("running", "streaming")
     and isinstance(x.get("lag"), int) and x.get("timeline") == tl]
l = [x["name"] for x in l]
ok = len(l) == 1 and len(r) >= int(sys.argv[1]) and (tl or 0) >= int(sys.argv[3])
print(l[0] if l else "-", len(r), tl, "" if ok else json.dumps(c["members"]))
sys.exit(0 if ok else 1)' "$1" "${2:-none}" "${3:-0}"
}
step "leader election and replicas"
out=$(wait_for "a leader and 2 streaming replicas" 240 health 2)
read -r leader _ timeline _ <<<"$out"
log "   leader: $leader"
took "leader + 2 replicas"

SUPER=$(cat "$PGKEEP_STACK_SECRETS/pg_superuser_password")
psql_primary() {
  PGPASSWORD=$SUPER PGCONNECT_TIMEOUT=5 psql -X -q -At -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "${PGKEEP_STACK_PRIMARY_PORT:-5000}" -U postgres -d postgres -c "$1"
}
# Each pgkeep command has deadlines of its own; this bounds the exec around it too.
pgkeepd_exec() { timeout 1200 podman exec "$(c pgkeepd)" "$@"; }
pgk() { pgkeepd_exec pgkeep --config /etc/pgkeep/pgkeepd.toml "$@"; }

step "pgkeep init, writes through HAProxy, WAL archived through pgkeepd"
wait_for "HAProxy :5000 to reach the leader" 60 psql_primary "SELECT 1" >/dev/null
pgk init --conninfo "host=$leader user=replicator dbname=postgres passfile=/run/secrets/pgkeepd_pgpass" >"$work/init.log" 2>&1 \
  || { cat "$work/init.log" >&2; die "pgkeep init"; }
psql_primary "CREATE TABLE stack_rows (id bigint PRIMARY KEY, at timestamptz DEFAULT now(), phase text)"
psql_primary "INSERT INTO stack_rows (id, phase) SELECT g, 'before' FROM generate_series(1, 50000) g"
archived() { # SEGMENT: the leader's archiver has archived it (or a later one)
  local last
  last=$(psql_primary "SELECT coalesce(last_archived_wal, '') || ' ' || failed_count || ' ' || coalesce(last_failed_wal, '') FROM pg_stat_archiver")
  [[ "${last%% *}" > "$1" || "${last%% *}" == "$1" ]] || { echo "archiver: last archived, failed count, last failed: $last"; return 1; }
}
seg=$(psql_primary "SELECT pg_walfile_name(pg_switch_wal())")
wait_for "segment $seg archived through pgkeepd" 120 archived "$seg" >/dev/null
received=$(curl -fsS --max-time 5 "http://127.0.0.1:${PGKEEP_STACK_PGKEEPD_PORT:-9187}/metrics" | grep '^pgkeep_wal_pushes_total' || true)
log "   pgkeepd: $(echo "$received" | tr '\n' ' ')"
echo "$received" | grep -q 'outcome="stored"' || die "pgkeepd's /metrics counts no stored push: $received"
took "archive through pgkeepd"

step "full backup from a replica"
pgk backup --type full >"$work/backup1.log" 2>&1 || { cat "$work/backup1.log" >&2; die "backup from a replica"; }
# The member Patroni chose (pgkeep logs it); never the leader.
member_of() { sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -o 'member=[a-z0-9]*' | head -n1 | cut -d= -f2; }
source1=$(member_of "$work/backup1.log")
[ -n "$source1" ] && [ "$source1" != "$leader" ] || die "the backup's source was '${source1:-?}', the leader is $leader"
log "   from $source1: $(tail -n 1 "$work/backup1.log")"
took "full backup"

step "pgkeepd check: the whole setup, line by line"
pgkeepd_exec pgkeepd --config /etc/pgkeep/pgkeepd.toml check >"$work/check.log" 2>&1 \
  || { cat "$work/check.log" >&2; die "pgkeepd check found a broken line (above)"; }
log "   $(grep -c '^ok' "$work/check.log") checks ok"
took "pgkeepd check"

# ---------------------------------------------------------------------------------------------
step "kill the leader's container ($leader)"
committed_before=$(psql_primary "SELECT count(*) FROM stack_rows")
podman kill "$(c "$leader")" >/dev/null
# A new leader on a new timeline, and a replica following it there.
out=$(wait_for "a new leader and a replica on its timeline after $leader was killed" 180 health 1 "$leader" $((timeline + 1)))
read -r leader2 _ <<<"$out"
[ "$leader2" != "$leader" ] || die "the killed member $leader is still the leader"
took "failover to $leader2"
wait_for "HAProxy :5000 to reach the new leader" 60 psql_primary "SELECT 1" >/dev/null
took "HAProxy :5000 routes to $leader2"
psql_primary "INSERT INTO stack_rows (id, phase) SELECT g, 'after' FROM generate_series(50001, 60000) g"
count=$(psql_primary "SELECT count(*) FROM stack_rows WHERE phase = 'before'")
[ "$count" = "$committed_before" ] || die "the new leader has $count of the $committed_before rows committed before the kill"
seg=$(psql_primary "SELECT pg_walfile_name(pg_switch_wal())")
wait_for "segment $seg (new timeline) archived" 120 archived "$seg" >/dev/null
took "writes + archive on the new leader"
step "next backup, on the new topology"
pgk backup --type incr >"$work/backup2.log" 2>&1 || { cat "$work/backup2.log" >&2; die "backup after the failover"; }
source2=$(member_of "$work/backup2.log")
[ -n "$source2" ] && [ "$source2" != "$leader2" ] && [ "$source2" != "$leader" ] \
  || die "the backup after the failover read '${source2:-?}' (new leader $leader2, killed $leader)"
log "   from $source2: $(tail -n 1 "$work/backup2.log")"
took "backup after failover"
podman start "$(c "$leader")" >/dev/null
wait_for "the old leader $leader back as a replica" 180 health 2 >/dev/null
took "old leader rejoined"

# ---------------------------------------------------------------------------------------------
out=$(health 2)
read -r cur _ <<<"$out"
victim=pg1; [ "$cur" != pg1 ] || victim=pg2
step "remove replica $victim (container and volume), recreate it: create-replica"
podman rm -f -t 5 "$(c "$victim")" >/dev/null
podman volume rm -f "${PROJECT}_$victim" >/dev/null
compose up -d --no-deps "$victim" >>"$work/up.log" 2>&1 || die "compose up $victim"
wait_for "$victim rebuilt and streaming" 240 health 2 >/dev/null
# (Into a file first: `grep -q` closing the pipe early fails the pipeline under pipefail.)
podman logs "$(c "$victim")" >"$work/$victim.log" 2>&1 || true
grep -q "replica has been created using pgkeep" "$work/$victim.log" \
  || { podman logs --tail 30 "$(c "$victim")" >&2; die "$victim was not created by pgkeep create-replica (log above)"; }
took "replica rebuilt by create-replica"

# ---------------------------------------------------------------------------------------------
step "restore test in a throwaway container"
committed=$(psql_primary "SELECT count(*) FROM stack_rows")
pgkeepd_exec pgkeepd --config /etc/pgkeep/pgkeepd.toml restore-test --json >"$work/drill.json" 2>"$work/drill.log" \
  || { cat "$work/drill.log" "$work/drill.json" >&2; die "the restore test failed"; }
# The drill replayed the archive to its end: every committed row is there, no more.
python3 - "$work/drill.json" "$committed" <<'PY' || die "the restore test's rows differ from what was committed"
import json, sys
r = json.load(open(sys.argv[1]))
rows = {t["table"]: t["rows"] for t in r["tables"]}
phases = " ".join(f'{p["name"]} {p["seconds"]:.1f}s' for p in r["phases"])
print(f'stack:    drill {r["verdict"]}: backup {r["backup"]}, RTO {r["rto_seconds"]:.1f} s, '
      f'{r["wal_segments_replayed"]} segments replayed; phases: {phases}', file=sys.stderr)
print(f'stack:    public.stack_rows: {rows.get("public.stack_rows")} rows restored, {sys.argv[2]} committed', file=sys.stderr)
sys.exit(0 if r["verdict"] == "passed" and rows.get("public.stack_rows") == int(sys.argv[2]) else 1)
PY
left=$(podman ps -a --filter label=pgkeep.restore-test --format '{{.Names}}')
[ -z "$left" ] || die "sandbox containers left behind: $left"
took "restore test"

log "summary:"
for t in "${TIMES[@]}"; do printf 'stack:   %-40s %8.1f s\n' "${t%%|*}" "$(echo "${t##*|}" | awk '{print $1/1000}')" >&2; done

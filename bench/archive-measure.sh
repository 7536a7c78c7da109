#!/usr/bin/env bash
# The measuring half of bench/archive.sh, run as the postgres user with the environment that
# script prepares (W, N, PGPORT, TLS, PGKEEP_BIN, AWS credentials). Not meant to run alone.
set -euo pipefail
SEGS=$(ls "$W/segments")
cd "$W"

# timed OUT CMD...: run CMD, append "<elapsed µs> <peak RSS KiB>" to OUT.
timed() {
  local out=$1; shift
  local t0 t1
  t0=$(date +%s%N)
  if ! /usr/bin/time -f "%M" -o "$W/rss.tmp" "$@" >/dev/null 2>"$W/last.err"; then
    echo "FAILED: $*" >&2; cat "$W/last.err" >&2; exit 1
  fi
  t1=$(date +%s%N)
  echo "$(( (t1 - t0) / 1000 )) $(tail -1 "$W/rss.tmp")" >> "$out"
}
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if(i<1)i=1; printf "%.1f", a[i]/1000}'; }
col() { awk -v c="$2" '{print $c}' "$1"; }
ready_all() { for s in $SEGS; do [ -f "$W/fake/pg_wal/archive_status/$s.done" ] && mv "$W/fake/pg_wal/archive_status/$s.done" "$W/fake/pg_wal/archive_status/$s.ready"; touch "$W/fake/pg_wal/archive_status/$s.ready"; done; rm -rf "$W/fake/pg_wal/pgkeep"; }
mark_done() { mv "$W/fake/pg_wal/archive_status/$1.ready" "$W/fake/pg_wal/archive_status/$1.done"; }

# pgkeep: a repository per scenario.
pk_conf() { # name store lookahead prefetch
  local f="$W/pk-$1.toml"
  if [ "$2" = local ]; then
    printf '[repository]\npath = "%s"\n' "$W/repo-pk-$1" > "$f"
  else
    printf '[repository]\nkind = "s3"\nbucket = "pgkeep"\nprefix = "pk-%s"\nregion = "garage"\nendpoint = "https://127.0.0.1:%s"\nca_file = "%s"\n' "$1" "$TLS" "$W/ca.crt" > "$f"
  fi
  printf '[archive]\npush_lookahead = %s\nget_prefetch = %s\n[log]\nlevel = "warn"\n' "$3" "$4" >> "$f"
  PGKEEP_CONFIG="$f" "$PGKEEP_BIN" init --data-dir "$W/fake" >/dev/null
  echo "$f"
}
pk() { local conf=$1; shift; env PGKEEP_CONFIG="$conf" "$PGKEEP_BIN" "$@"; }

# pgBackRest: a repository (and spool) per scenario, stanza created against the live server.
pb_conf() { # name store async
  local f="$W/pb-$1.conf"
  {
    echo "[global]"
    if [ "$2" = local ]; then
      echo "repo1-path=$W/repo-pb-$1"
    else
      echo "repo1-type=s3"; echo "repo1-path=/pb-$1"; echo "repo1-s3-bucket=pgkeep"
      echo "repo1-s3-endpoint=127.0.0.1"; echo "repo1-storage-port=$TLS"; echo "repo1-s3-region=garage"
      echo "repo1-s3-key=$AWS_ACCESS_KEY_ID"; echo "repo1-s3-key-secret=$AWS_SECRET_ACCESS_KEY"
      echo "repo1-s3-uri-style=path"; echo "repo1-storage-verify-tls=n"
    fi
    echo "compress-type=zst"; echo "archive-async=$3"; echo "process-max=2"
    echo "spool-path=$W/pb-spool-$1"; echo "lock-path=$W/pb-lock-$1"
    echo "log-level-console=off"; echo "log-level-stderr=off"; echo "log-level-file=off"
    echo "[bench]"; echo "pg1-path=$W/pgdata"; echo "pg1-port=$PGPORT"; echo "pg1-socket-path=$W"
  } > "$f"
  mkdir -p "$W/pb-spool-$1" "$W/pb-lock-$1"
  pgbackrest --config="$f" --stanza=bench stanza-create >/dev/null
  echo "$f"
}
pb() { local conf=$1; shift; pgbackrest --config="$conf" --stanza=bench "$@"; }

declare -A R
# One push per call, nothing ahead: the latency PostgreSQL sees per segment.
single_push() { # store
  local st=$1 pkc pbc
  pkc=$(pk_conf "single-$st" "$st" 0 0); pbc=$(pb_conf "single-$st" "$st" n)
  ready_all; : > "$W/t-pk"; for s in $SEGS; do timed "$W/t-pk" env PGKEEP_CONFIG="$pkc" "$PGKEEP_BIN" archive-push "$W/fake/pg_wal/$s"; mark_done "$s"; done
  ready_all; : > "$W/t-pb"; for s in $SEGS; do timed "$W/t-pb" pgbackrest --config="$pbc" --stanza=bench --pg1-path="$W/fake" archive-push "$W/fake/pg_wal/$s"; mark_done "$s"; done
  R[push50-$st-pk]=$(col "$W/t-pk" 1 | pct 50); R[push50-$st-pb]=$(col "$W/t-pb" 1 | pct 50)
  R[push95-$st-pk]=$(col "$W/t-pk" 1 | pct 95); R[push95-$st-pb]=$(col "$W/t-pb" 1 | pct 95)
  R[rss-$st-pk]=$(col "$W/t-pk" 2 | sort -n | tail -1); R[rss-$st-pb]=$(col "$W/t-pb" 2 | sort -n | tail -1)
  R[stored-$st-pk]=$( [ "$st" = local ] && du -sk "$W/repo-pk-single-$st" | cut -f1 || echo "")
  R[stored-$st-pb]=$( [ "$st" = local ] && du -sk "$W/repo-pb-single-$st" | cut -f1 || echo "")
}
# The archiver's loop over a backlog: call, mark .done, next; look-ahead / async allowed.
sustained() { # store tool-conf-name
  local st=$1 pkc pbc pbs t0 t1
  pkc=$(pk_conf "sus-$st" "$st" 8 4); pbc=$(pb_conf "sus-$st" "$st" y); pbs=$(pb_conf "sussync-$st" "$st" n)
  ready_all; : > "$W/t-pk"; t0=$(date +%s%N)
  for s in $SEGS; do timed "$W/t-pk" env PGKEEP_CONFIG="$pkc" "$PGKEEP_BIN" archive-push "$W/fake/pg_wal/$s"; mark_done "$s"; done
  t1=$(date +%s%N); R[sus-$st-pk]=$(awk -v n="$N" -v d=$((t1 - t0)) 'BEGIN {printf "%.1f", n / (d / 1e9)}')
  R[rssla-$st-pk]=$(col "$W/t-pk" 2 | sort -n | tail -1)
  ready_all; : > "$W/t-pb"; t0=$(date +%s%N)
  for s in $SEGS; do timed "$W/t-pb" pgbackrest --config="$pbc" --stanza=bench --pg1-path="$W/fake" archive-push "$W/fake/pg_wal/$s"; mark_done "$s"; done
  t1=$(date +%s%N); R[sus-$st-pb]=$(awk -v n="$N" -v d=$((t1 - t0)) 'BEGIN {printf "%.1f", n / (d / 1e9)}')
  ready_all; t0=$(date +%s%N)
  for s in $SEGS; do pgbackrest --config="$pbs" --stanza=bench --pg1-path="$W/fake" archive-push "$W/fake/pg_wal/$s"; mark_done "$s"; done
  t1=$(date +%s%N); R[sussync-$st-pb]=$(awk -v n="$N" -v d=$((t1 - t0)) 'BEGIN {printf "%.1f", n / (d / 1e9)}')
  # archive-get from the repositories just filled, as a replaying standby asks for them.
  for mode in 0 4; do
    local sb="$W/standby-pk-$st-$mode"; mkdir -p "$sb/pg_wal" "$sb/global"; : > "$W/t-get"
    sed -i "s/^get_prefetch = .*/get_prefetch = $mode/" "$pkc"
    for s in $SEGS; do timed "$W/t-get" env PGKEEP_CONFIG="$pkc" "$PGKEEP_BIN" archive-get "$s" "$sb/pg_wal/RECOVERYXLOG"; cmp -s "$sb/pg_wal/RECOVERYXLOG" "$W/segments/$s" || { echo "pgkeep get $s differs" >&2; exit 1; }; done
    R[get50-$st-$mode-pk]=$(col "$W/t-get" 1 | pct 50); R[getavg-$st-$mode-pk]=$(col "$W/t-get" 1 | awk '{s+=$1} END {printf "%.1f", s/NR/1000}')
  done
  for mode in n y; do
    local sb="$W/standby-pb-$st-$mode"; mkdir -p "$sb/pg_wal" "$sb/global"; cp "$W/fake/global/pg_control" "$sb/global/"; cp "$W/fake/PG_VERSION" "$sb/"; : > "$W/t-get"
    local conf; [ "$mode" = y ] && conf=$pbc || conf=$pbs
    for s in $SEGS; do timed "$W/t-get" pgbackrest --config="$conf" --stanza=bench --pg1-path="$sb" archive-get "$s" "$sb/pg_wal/RECOVERYXLOG"; cmp -s "$sb/pg_wal/RECOVERYXLOG" "$W/segments/$s" || { echo "pgBackRest get $s differs" >&2; exit 1; }; done
    R[get50-$st-$mode-pb]=$(col "$W/t-get" 1 | pct 50); R[getavg-$st-$mode-pb]=$(col "$W/t-get" 1 | awk '{s+=$1} END {printf "%.1f", s/NR/1000}')
  done
}

for st in local garage; do
  echo "   $st: single pushes" >&2; single_push "$st"
  echo "   $st: sustained pushes and gets" >&2; sustained "$st"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
row() { printf "%-58s %12s %16s %8s\n" "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
wal_mib=$(( N * 16 ))
echo
echo "pgkeep vs pgBackRest 2.45 (compress-type=zst) — $N real 16 MiB pgbench segments ($wal_mib MiB), $(nproc) cores"
printf "%-58s %12s %16s %8s\n" "metric" "pgkeep" "pgBackRest" "ratio"
for st in local garage; do
  row "archive-push p50 ms, one segment, sync [$st]" "${R[push50-$st-pk]}" "${R[push50-$st-pb]}"
  row "archive-push p95 ms, one segment, sync [$st]" "${R[push95-$st-pk]}" "${R[push95-$st-pb]}"
  row "sustained segments/s: pgkeep look-ahead 8 vs pgBR async [$st]" "${R[sus-$st-pk]}" "${R[sus-$st-pb]}"
  row "sustained segments/s: pgkeep look-ahead 8 vs pgBR sync [$st]" "${R[sus-$st-pk]}" "${R[sussync-$st-pb]}"
  row "archive-get p50 ms, no prefetch vs pgBR sync [$st]" "${R[get50-$st-0-pk]}" "${R[get50-$st-n-pb]}"
  row "archive-get mean ms, prefetch 4 vs pgBR async [$st]" "${R[getavg-$st-4-pk]}" "${R[getavg-$st-y-pb]}"
  row "archive-get mean ms, no prefetch vs pgBR sync [$st]" "${R[getavg-$st-0-pk]}" "${R[getavg-$st-n-pb]}"
  row "archive-push peak RSS MiB, sync [$st]" "$(awk -v k="${R[rss-$st-pk]}" 'BEGIN {printf "%.1f", k/1024}')" "$(awk -v k="${R[rss-$st-pb]}" 'BEGIN {printf "%.1f", k/1024}')"
  row "archive-push peak RSS MiB, pgkeep with look-ahead [$st]" "$(awk -v k="${R[rssla-$st-pk]}" 'BEGIN {printf "%.1f", k/1024}')" "-"
done
row "stored MiB for $wal_mib MiB of WAL [local]" "$(awk -v k="${R[stored-local-pk]}" 'BEGIN {printf "%.1f", k/1024}')" "$(awk -v k="${R[stored-local-pb]}" 'BEGIN {printf "%.1f", k/1024}')"
echo
echo "goals (issue 2): p50 push <= 0.5x pgBackRest sync; sustained >= 2x pgBackRest async; push peak RSS <= 32 MiB"
for st in local garage; do
  awk -v a="${R[push50-$st-pk]}" -v b="${R[push50-$st-pb]}" -v s="$st" 'BEGIN {printf "  p50 push [%s]: %.2fx -> %s\n", s, a/b, (a <= 0.5*b) ? "met" : "NOT met"}'
  awk -v a="${R[sus-$st-pk]}" -v b="${R[sus-$st-pb]}" -v s="$st" 'BEGIN {printf "  sustained [%s]: %.2fx -> %s\n", s, a/b, (a >= 2*b) ? "met" : "NOT met"}'
  awk -v k="${R[rss-$st-pk]}" -v s="$st" 'BEGIN {printf "  peak RSS [%s]: %.1f MiB -> %s\n", s, k/1024, (k <= 32768) ? "met" : "NOT met"}'
done

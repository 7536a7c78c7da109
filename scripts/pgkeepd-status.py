"""Prints an abridged pgkeepd /status (JSON on stdin) for the demo."""
import json
import sys

s = json.load(sys.stdin)
for name, j in s["jobs"].items():
    last = j.get("last_run") or {}
    print(
        f"  job {name:<7} {j['kind']:<12} schedule {j['schedule']!r:<18} "
        f"runs {j['runs_total']}, failures {j['failures_total']}, skipped {j['skipped_total']}; "
        f"last: {last.get('outcome', '-')} in {last.get('duration_seconds', 0):.1f} s; next {j.get('next_run')}"
    )
    if last.get("detail"):
        print(f"      {last['detail']}")
    if last.get("error"):
        print(f"      error: {last['error']}")
r = s["repository"]
for kind, b in r["newest_backup"].items():
    print(f"  newest {kind:<4} backup {b['id']} (consistent at {b['stop_time']})")
age = r.get("newest_wal_age_seconds") or 0
print(f"  newest archived wal {r.get('newest_wal')}, {age:.0f} s old; repository {r['repository_bytes'] / 1048576:.1f} MiB")
v = r.get("last_verify")
print(f"  last verify: {v['problems']} problem(s) at {v['at']}" if v else "  last verify: none yet")

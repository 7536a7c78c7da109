# Shared by the bench scripts (sourced).
# wait_until WHAT SECONDS CMD...: poll CMD every 0.1 s; past the deadline, say what was awaited
# and fail (the scripts run under set -e, so they stop there).
wait_until() {
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then echo "bench: gave up after ${secs}s waiting for $what" >&2; return 1; fi
    sleep 0.1
  done
}

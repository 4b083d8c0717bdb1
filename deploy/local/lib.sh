# shellcheck shell=bash
# Shared by the deploy/local/*.sh scripts; source it, do not run it:
#
#   LOG_TAG=cluster   # names its log lines; default: the script's name
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
#   say MESSAGE...          a step the reader follows, on stdout: "== MESSAGE"
#   log MESSAGE...          a diagnostic on stderr: "[LOG_TAG Ns] MESSAGE" (seconds since start)
#   die MESSAGE...          log "ERROR: MESSAGE" and exit 1
#   pass / fail MESSAGE...  count a check and print "PASS: ..." / "FAIL: ..."
#   summary                 print "N passed, N failed"; false when any check failed
#   wait_for DESCRIPTION TIMEOUT COMMAND...
#                           run COMMAND (output discarded) every 0.5 s until it succeeds;
#                           after TIMEOUT seconds log what was awaited and return 1
#   mgmt PATH [CURL-ARGS...]
#                           the RabbitMQ management API at PATH, as the management user
#   queue_stat QUEUE FIELD [QUERY]
#                           a number the management API reports for QUEUE in vhost /
#                           (FIELD dotted: messages, message_stats.redeliver), 0 when unknown;
#                           QUERY e.g. $FRESH_TOTALS for counts without the statistics' lag
#   queue_consumers QUEUE   consumers of QUEUE in vhost /, 0 when unknown
#
# The RabbitMQ management API is found as the operator finds it: WARREN_MANAGEMENT_URL,
# WARREN_MANAGEMENT_USERNAME and WARREN_MANAGEMENT_PASSWORD (defaults: the local
# broker's http://127.0.0.1:15672, guest, guest).

: "${LOG_TAG:=$(basename "$0" .sh)}"
: "${WARREN_MANAGEMENT_URL:=http://127.0.0.1:15672}"
: "${WARREN_MANAGEMENT_USERNAME:=guest}"
: "${WARREN_MANAGEMENT_PASSWORD:=guest}"
export WARREN_MANAGEMENT_URL WARREN_MANAGEMENT_USERNAME WARREN_MANAGEMENT_PASSWORD

PASSED=0
FAILED=0

say() { printf '== %s\n' "$*"; }
log() { printf '[%s %3ss] %s\n' "$LOG_TAG" "$SECONDS" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

pass() {
  PASSED=$((PASSED + 1))
  echo "PASS: $*"
}
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL: $*"
}
# Runs a command as one check: PASS, or FAIL with the first lines of its output
# (kept in $TMP/check.log; the caller makes TMP).
check() { # description command...
  local what="$1"
  shift
  if "$@" >"$TMP/check.log" 2>&1; then pass "$what"; else
    fail "$what"
    sed 's/^/    /' "$TMP/check.log" | head -20
  fi
}
elapsed() { printf '%ss' "$(($(date +%s) - $1))"; } # start (epoch s) -> "Ns" since

summary() {
  echo "$PASSED passed, $FAILED failed"
  ((FAILED == 0))
}

wait_for() { # description timeout command...
  local what="$1" timeout="$2"
  shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= timeout)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

mgmt() { # path [curl-args...]
  local path="$1"
  shift
  curl -fsS -u "$WARREN_MANAGEMENT_USERNAME:$WARREN_MANAGEMENT_PASSWORD" "$@" \
    "$WARREN_MANAGEMENT_URL$path"
}

queue_stat() { # queue field [query] (field dotted, e.g. message_stats.redeliver)
  local n path="/api/queues/%2f/$1"
  # Totals come only with the vhost's listing; the queue is then picked by name.
  [[ -n "${3:-}" ]] && path="/api/queues/%2f?$3&name=$1"
  n=$(mgmt "$path" 2>/dev/null | python3 -c '
import json, sys
value = json.load(sys.stdin)
if isinstance(value, list):
    value = next((q for q in value if q.get("name") == sys.argv[2]), None)
for key in sys.argv[1].split("."):
    value = value.get(key) if isinstance(value, dict) else None
print(value if isinstance(value, int) else "")' "$2" "$1" 2>/dev/null)
  echo "${n:-0}"
}

queue_consumers() { queue_stat "$1" consumers; } # queue

# The queue's own counts, current when read (the statistics database lags seconds).
FRESH_TOTALS='disable_stats=true&enable_queue_totals=true'
export FRESH_TOTALS

#!/usr/bin/env bash
# Consistency soak: a throwaway Postgres, pgvalet in front of it, and the
# randomized checker (tests/consistency.py) hammering it for minutes.  Exits
# non-zero on any stale read, any checker error, or if the proxy dies.
#
#   tests/soak/run-consistency.sh [PATH/TO/pgvalet]     (default build/pgvalet; `make soak`)
#
# Knobs (environment):
#   SOAK_SECONDS=300 SOAK_READERS=16 SOAK_WRITERS=8 SOAK_ROWS=1000 SOAK_HOT_ROWS=8
#   SOAK_BYPASS_WRITERS=2 SOAK_BYPASS_BOUND_MS=1000   writers on direct connections, seen by
#                             the proxy through the replication stream (0 = none, e.g. with
#                             SOAK_PROXY_ARGS="--invalidation ttl ...")
#   SOAK_WORKERS=2 SOAK_POOL_MODE=transaction SOAK_POOL_SIZE=20 SOAK_SEED=<random>
#   SOAK_PROXY_ARGS="..."     more pgvalet flags (e.g. "--cache-size 2MB")
#   SOAK_CHECKER_ARGS="..."   more tests/consistency.py flags (e.g. "--write-duty 1")
#   SOAK_OUT=build/soak/<time>  where the proxy log and the JSON result are kept
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${1:-${PGVALET_BINARY:-$ROOT/build/pgvalet}}
PY=/usr/bin/python3
SECS=${SOAK_SECONDS:-300}
READERS=${SOAK_READERS:-16}
WRITERS=${SOAK_WRITERS:-8}
BYPASS=${SOAK_BYPASS_WRITERS:-2}
BOUND_MS=${SOAK_BYPASS_BOUND_MS:-1000}
ROWS=${SOAK_ROWS:-1000}
HOT=${SOAK_HOT_ROWS:-8}
WORKERS=${SOAK_WORKERS:-2}
POOL_MODE=${SOAK_POOL_MODE:-transaction}
POOL_SIZE=${SOAK_POOL_SIZE:-20}
SEED=${SOAK_SEED:-$(( (RANDOM << 15) | RANDOM ))}
OUT=${SOAK_OUT:-$ROOT/build/soak/$(date +%Y%m%d-%H%M%S)}

die() { echo "soak: $*" >&2; exit 2; }
[ -x "$BIN" ] || die "pgvalet binary not found or not executable: $BIN (run: make)"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

TMP=$(mktemp -d /tmp/pgv-soak.XXXXXX)
chmod 755 "$TMP"
VALET_PID=""
stop_proxy() {
	if [ -n "$VALET_PID" ] && kill -0 "$VALET_PID" 2>/dev/null; then
		kill -TERM "$VALET_PID" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$VALET_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$VALET_PID" 2>/dev/null || true
	fi
	if [ -n "$VALET_PID" ]; then
		wait "$VALET_PID" 2>/dev/null && PROXY_RC=0 || PROXY_RC=$?
		VALET_PID=""
	fi
}
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_proxy
	"$ROOT/scripts/pg-cluster" stop "$TMP/pg" >/dev/null 2>&1 || true
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

out=$("$ROOT/scripts/pg-cluster" start "$TMP/pg") || die "pg-cluster start failed"
PG_PORT=$(printf '%s\n' "$out" | sed -n 's/^PORT=//p')
[ -n "$PG_PORT" ] || die "pg-cluster did not print PORT="
DIRECT="postgresql://pgvalet:pgvalet-pass@127.0.0.1:$PG_PORT/appdb"

PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PROXY="postgresql://pgvalet:pgvalet-pass@127.0.0.1:$PORT/appdb"
# shellcheck disable=SC2206  # SOAK_PROXY_ARGS is split on purpose
CMD=("$BIN" --upstream "$DIRECT" --listen 127.0.0.1 --port "$PORT" --workers "$WORKERS"
	--pool-mode "$POOL_MODE" --pool-size "$POOL_SIZE" ${SOAK_PROXY_ARGS:-})
echo "soak: ${CMD[*]}"
"${CMD[@]}" </dev/null >"$OUT/pgvalet.log" 2>&1 &
VALET_PID=$!
ready=0
for _ in $(seq 150); do
	kill -0 "$VALET_PID" 2>/dev/null || break
	if $PY -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), 0.5)" 2>/dev/null; then
		ready=1
		break
	fi
	sleep 0.1
done
[ "$ready" = 1 ] || { cat "$OUT/pgvalet.log" >&2; die "pgvalet did not come up"; }
if [ "$BYPASS" -gt 0 ]; then
	# Bypassing writes reach the cache only once the replication stream is up.
	up=0
	for _ in $(seq 150); do
		kill -0 "$VALET_PID" 2>/dev/null || break
		if grep -qE "stream [^ ]+: up" "$OUT/pgvalet.log"; then
			up=1
			break
		fi
		sleep 0.1
	done
	[ "$up" = 1 ] || { tail -n 20 "$OUT/pgvalet.log" >&2
		die "the replication stream did not come up (SOAK_BYPASS_WRITERS=0 for --invalidation ttl)"; }
fi

echo "soak: ${SECS}s, $READERS readers, $WRITERS writers, $BYPASS bypass writers (bound ${BOUND_MS} ms)," \
	"$ROWS rows, seed $SEED, output in $OUT"
rc=0
# shellcheck disable=SC2086  # SOAK_CHECKER_ARGS is split on purpose
$PY "$ROOT/tests/consistency.py" --dsn "$PROXY" --direct-dsn "$DIRECT" --seconds "$SECS" \
	--readers "$READERS" --writers "$WRITERS" --bypass-writers "$BYPASS" --bypass-bound-ms "$BOUND_MS" \
	--rows "$ROWS" --hot-rows "$HOT" --seed "$SEED" --json "$OUT/result.json" ${SOAK_CHECKER_ARGS:-} || rc=$?
if [ -s "$OUT/result.json" ]; then
	# How long reads missed writes that bypassed the proxy (the stream's lag, as clients saw it)
	$PY -c 'import json, sys; r = json.load(open(sys.argv[1]))
print("soak: bypass writes %d, lagged reads %d, lag max %.1f ms, p99 %.1f ms (bound %g ms), stale-bypass %d"
      % (r["bypass_writes"], r["lagged_reads"], r["max_bypass_lag_ms"], r["p99_bypass_lag_ms"],
         r["bypass_bound_ms"], r["violation_kinds"].get("stale-bypass", 0)))' "$OUT/result.json" || true
fi

alive=1
kill -0 "$VALET_PID" 2>/dev/null || alive=0
PROXY_RC=""
stop_proxy
grep -E "cache: [0-9]+ hits|stream: [0-9]+ database" "$OUT/pgvalet.log" | sed 's/^/soak: proxy /' || true
if [ "$alive" = 0 ]; then
	echo "soak: FAIL: pgvalet died during the run (status $PROXY_RC); log tail:" >&2
	tail -n 40 "$OUT/pgvalet.log" >&2
	exit 3
fi
if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$OUT/pgvalet.log"; then
	echo "soak: FAIL: sanitizer report in $OUT/pgvalet.log" >&2
	exit 3
fi
case $rc in
0) echo "soak: PASS (seed $SEED)" ;;
1) echo "soak: FAIL: stale reads or other violations (seed $SEED); details in $OUT/result.json" >&2 ;;
*) echo "soak: FAIL: checker status $rc (errors, hung threads or final mismatch; seed $SEED); see $OUT/result.json" >&2 ;;
esac
exit "$rc"

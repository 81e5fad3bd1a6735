#!/usr/bin/env bash
# RPC-only test in the root namespace (--skip-network): a stand-in A consumes a stream of casts,
# is killed (SIGTERM or SIGKILL) mid-stream, a stand-in B with the same --host takes the queue
# over later; check.py proves what was lost or duplicated.
#   tests/nova_standin/test_rpc.sh [TERM|KILL] [broker-host] [stand-in flags...]
#   (default KILL 127.0.0.1; e.g. `test_rpc.sh KILL 127.0.0.1 --ack-after-handle`)
# STANDIN_FLAGS: more flagfile lines for stand-ins and casters, e.g. against a lab broker (user
# nova), from its namespace:
#   ip netns exec P-broker env STANDIN_FLAGS=$'--rabbit_userid=nova\n--rabbit_password=nova' \
#     tests/nova_standin/test_rpc.sh KILL 10.9.0.10
set -u
SIG=${1:-KILL}
BROKER=${2:-127.0.0.1}
shift 2 2>/dev/null || shift $#
EXTRA=("$@")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=$ROOT/.venv/bin/python
D=$ROOT/tests/nova_standin
T=$(mktemp -d /tmp/nova-standin-rpc.XXXXXX)
H=standin-test-$$-$RANDOM
PIDS=()
# shellcheck disable=SC2317 # run by the EXIT trap; shellcheck 0.9 takes the closing `exit`
# for the end of every path and calls the body unreachable (koalaman/shellcheck#2542)
cleanup() {
  trap '' PIPE INT TERM HUP
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  timeout 10 rabbitmqctl -q delete_queue "network.$H" >/dev/null 2>&1
  rm -rf "$T"
} >/dev/null 2>&1
trap cleanup EXIT
trap "exit 130" INT TERM HUP PIPE
cp "$ROOT/tests/fixtures/nova.conf.flagfile" "$T/nova.conf"
printf -- '--rabbit_host=%s\n--networks_path=%s/networks\n' "$BROKER" "$T" >>"$T/nova.conf"
if [ -n "${STANDIN_FLAGS:-}" ]; then printf '%s\n' "$STANDIN_FLAGS" >>"$T/nova.conf"; fi
"$PY" "$D/db.py" init "$T/db.json" >/dev/null

start_nn() { # name
  "$PY" "$D/nova_network.py" --flagfile="$T/nova.conf" --host="$H" --db "$T/db.json" \
    --record "$T/rec-$1.jsonl" --node "$1" --skip-network "${EXTRA[@]}" >"$T/nn-$1.log" 2>&1 &
  LAST=$!
  PIDS+=("$LAST")
}
wait_ready() { # name
  for _ in $(seq 1 100); do grep -q ' ready ' "$T/nn-$1.log" 2>/dev/null && return 0; sleep 0.1; done
  echo "stand-in $1 not ready"; cat "$T/nn-$1.log"; return 1
}

start_nn A; A=$LAST; wait_ready A || exit 2
grep -h 'starting\|ready' "$T/nn-A.log"
"$PY" "$D/cast.py" --flagfile="$T/nova.conf" --host="$H" --log "$T/cast.jsonl" \
  --duration 4 --interval 0.02 >"$T/cast.out" 2>&1 &
C=$!; PIDS+=("$C")
sleep 1.5
kill -"$SIG" "$A"; echo "A ($A) got SIG$SIG at $(date +%T.%N)"
sleep 0.5
start_nn B; B=$LAST; wait_ready B || exit 2   # B needs its 2 s start-up: the queue holds the casts
wait "$C"; cat "$T/cast.out"
echo "--- calls to B (DB only, --skip-network):"
timeout 30 "$PY" "$D/rpc_call.py" --flagfile="$T/nova.conf" --host="$H" ping seq=0 || echo "FAIL ping"
timeout 30 "$PY" "$D/rpc_call.py" --flagfile="$T/nova.conf" --host="$H" associate_floating_ip \
  floating_address=10.2.3.105 fixed_address=10.0.0.3 || echo "FAIL associate"
timeout 30 "$PY" "$D/rpc_call.py" --flagfile="$T/nova.conf" --host="$H" _disassociate_floating_ip \
  floating_address=10.2.3.104 || echo "FAIL disassociate"
timeout 30 "$PY" "$D/rpc_call.py" --flagfile="$T/nova.conf" --host="$H" --cast some_nova_method x=1
grep -q '"address": "10.2.3.105"' "$T/db.json" && echo "ok   - DB has 10.2.3.105" || echo "FAIL - DB"
sleep 0.3; grep -c '"method": "some_nova_method"' "$T/rec-B.jsonl" | sed 's/^/generic recorder lines: /'
sleep 1
kill -TERM "$B"; wait "$B" 2>/dev/null; wait "$A" 2>/dev/null
"$PY" "$D/check.py" --cast "$T/cast.jsonl" "$T/rec-A.jsonl" "$T/rec-B.jsonl"
rc=$?
echo "check rc=$rc"
exit $rc

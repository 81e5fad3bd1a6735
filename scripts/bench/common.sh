# scripts/bench/common.sh: helpers shared by the lab benchmarks (failover, peers). Sourced, with
# the repository root as the working directory and PY set to the stand-in's Python.

# Runs a command; its output is shown only if it fails.
quiet() {
    local out
    if ! out=$("$@" 2>&1); then
        printf 'bench: %s failed:\n%s\n' "$*" "$out" >&2
        return 1
    fi
}

other() { [ "$1" = net1 ] && echo net2 || echo net1; }

# The release binary: $NNHA_BIN if set (e.g. a build made elsewhere), else `cargo build --release`.
nnha_bin() {
    if [ -n "${NNHA_BIN:-}" ]; then
        [ -x "$NNHA_BIN" ] || { echo "bench: NNHA_BIN=$NNHA_BIN is not an executable" >&2; return 1; }
    else
        # shellcheck disable=SC1091
        [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
        cargo build --locked --release --quiet --bin nova-network-ha
        NNHA_BIN=$PWD/target/release/nova-network-ha
    fi
    export NNHA_BIN
}

# record KIND RUN PROBE_JSON [KEY=JSON_VALUE...]: one JSON line on stdout with the largest
# disconnection of the VIP and of the VM in the prober's report (0 when there was no outage,
# null when the outage was still open at an edge of the probe window), plus the given fields.
record() {
    "$PY" - "$@" <<'PYEOF'
import json, sys
kind, run, probe = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
out = {"kind": kind, "run": run}
for name in ("vip", "vm"):
    t = probe["targets"][name]
    out[name + "_ms"] = 0.0 if not t["outages"] else t["max_disconnection_ms"]
for kv in sys.argv[4:]:
    k, v = kv.split("=", 1)
    out[k] = json.loads(v)
print(json.dumps(out))
PYEOF
}

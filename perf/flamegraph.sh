#!/usr/bin/env bash
# Usage: perf/flamegraph.sh SCENARIO        (make flamegraph SCENARIO=c)
#
# Starts the server under `perf record` (software cpu-clock event, 999 Hz,
# DWARF call graphs), runs the scenario's tern-bench load against it (same
# load as perf/compare.py; QUICK=1 for the --quick size), stops the server and
# renders perf/flamegraph-<SCENARIO>.svg with inferno.
#
# Env: TERN_BIN   server to profile (default target/profiling/tern if it exists,
#                 else target/release/tern); any NATS-compatible server accepting
#                 `-a ADDR -p PORT` works, e.g. TERN_BIN=/usr/sbin/nats-server
#      TERN_BENCH tern-bench binary (default perf/bench/target/release/tern-bench)
#      QUICK=1    use the --quick load size
#      KEEP=1     keep the perf.data / folded stacks (printed path)
set -euo pipefail

SCENARIO="${1:-}"
if [[ -z "$SCENARIO" || "$SCENARIO" == -h || "$SCENARIO" == --help ]]; then
    sed -n '2,16p' "$0"; exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

if [[ -z "${TERN_BIN:-}" ]]; then
    if [[ -x target/profiling/tern ]]; then TERN_BIN=target/profiling/tern; else TERN_BIN=target/release/tern; fi
fi
BENCH="${TERN_BENCH:-perf/bench/target/release/tern-bench}"
[[ -x "$TERN_BIN" ]] || { echo "flamegraph.sh: server binary not found: $TERN_BIN (cargo build --profile profiling)" >&2; exit 2; }
[[ -x "$BENCH" ]] || cargo build --release --manifest-path perf/bench/Cargo.toml
command -v perf >/dev/null || { echo "flamegraph.sh: perf not installed (apt-get install linux-perf)" >&2; exit 2; }
if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
    echo "flamegraph.sh: installing inferno from crates.io ..." >&2
    cargo install --quiet inferno
fi

QUICKFLAG=(); [[ "${QUICK:-}" == 1 ]] && QUICKFLAG=(--quick)
# validate the scenario name before starting anything
python3 perf/compare.py --bench-args "$SCENARIO" "${QUICKFLAG[@]}" >/dev/null

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
URL="nats://127.0.0.1:$PORT"
read -r -a ARGS <<<"$(python3 perf/compare.py --bench-args "$SCENARIO" --url "$URL" "${QUICKFLAG[@]}")"

WORK="$(mktemp -d /tmp/tern-flame.XXXXXX)"
OUT="perf/flamegraph-$SCENARIO.svg"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PERF_PID=""
cleanup() {
    local rc=$?
    if [[ -n "$PERF_PID" ]] && kill -0 "$PERF_PID" 2>/dev/null; then
        pkill -TERM -P "$PERF_PID" 2>/dev/null || true   # the profiled server (perf's child only)
        sleep 1
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
    fi
    if [[ "${KEEP:-}" == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
    exit $rc
}
trap cleanup EXIT INT TERM

# JetStream scenarios (js*): the server gets a fresh store directory.
SERVER_ARGS=(-a 127.0.0.1 -p "$PORT")
[[ "$SCENARIO" == js* ]] && SERVER_ARGS+=(-js -sd "$WORK/store")
echo "== profiling $TERN_BIN on $URL, scenario $SCENARIO" >&2
perf record -e cpu-clock -F 999 -g --call-graph dwarf -o "$WORK/perf.data" -- \
    "$TERN_BIN" "${SERVER_ARGS[@]}" >"$WORK/server.log" 2>&1 &
PERF_PID=$!

# wait until the server answers with INFO
python3 - "$PORT" <<'EOF'
import socket, sys, time
port = int(sys.argv[1]); deadline = time.time() + 15
while time.time() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            if s.recv(4) == b"INFO":
                sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("flamegraph.sh: server did not start")
EOF

if [[ ${#ARGS[@]} -gt 0 ]]; then
    echo "== $BENCH ${ARGS[*]}" >&2
    "$BENCH" "${ARGS[@]}"
else
    sleep 2   # idle scenario: nothing to run
fi

# stop the server (perf's child), then perf finishes writing
SERVER_PID="$(pgrep -P "$PERF_PID" | head -n1 || true)"
[[ -n "$SERVER_PID" ]] && kill -TERM "$SERVER_PID" 2>/dev/null || true
for _ in $(seq 50); do kill -0 "$PERF_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PERF_PID" 2>/dev/null; then
    [[ -n "$SERVER_PID" ]] && kill -KILL "$SERVER_PID" 2>/dev/null || true
fi
wait "$PERF_PID" || true
PERF_PID=""

echo "== perf script | inferno-collapse-perf | inferno-flamegraph" >&2
perf script -i "$WORK/perf.data" --no-inline 2>/dev/null > "$WORK/perf.script"
inferno-collapse-perf < "$WORK/perf.script" > "$WORK/folded"
[[ -s "$WORK/folded" ]] || { echo "flamegraph.sh: no samples collected" >&2; exit 1; }
inferno-flamegraph --countname ns --title "$(basename "$TERN_BIN") — scenario $SCENARIO (cpu-clock, 999 Hz; widths = CPU ns)" < "$WORK/folded" > "$OUT"
echo "wrote $OUT ($(wc -l < "$WORK/folded") distinct stacks, $(awk "{s+=\$NF} END {printf \"%.2f\", s/1e9}" "$WORK/folded") CPU-seconds sampled)" >&2

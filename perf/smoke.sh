#!/usr/bin/env bash
# make test's check of the benchmark itself: small tern-bench runs against the built tern
# (one node, then across a route between two nodes) must deliver every message; tern-bench
# exits non-zero on any loss. No timing is asserted.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TERN_BIN="${TERN_BIN:-$ROOT/target/x86_64-unknown-linux-gnu/release/tern}"
BENCH="${TERN_BENCH:-$ROOT/perf/bench/target/release/tern-bench}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start() { "$TERN_BIN" -a 127.0.0.1 "$@" >/dev/null 2>&1 & PIDS+=($!); }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 not listening" >&2; exit 1; }

P=$(free_port); start -p "$P"; wait_port "$P"
"$BENCH" -s "nats://127.0.0.1:$P" -np 2 -ns 3 -n 20000 -ms 64 smoke | grep -E "^Pub/Sub stats"
"$BENCH" -s "nats://127.0.0.1:$P" -np 3 -ns 10 -n 3000 -ms 1000 smoke.wide | grep -E "^Pub/Sub stats"

A=$(free_port); CA=$(free_port); B=$(free_port); CB=$(free_port)
start -p "$A" --cluster "nats://127.0.0.1:$CA" --cluster_name smoke
start -p "$B" --cluster "nats://127.0.0.1:$CB" --cluster_name smoke --routes "nats://127.0.0.1:$CA"
wait_port "$A"; wait_port "$B"
"$BENCH" -s "nats://127.0.0.1:$A" -sub_s "nats://127.0.0.1:$B" -np 2 -ns 2 -n 20000 -ms 128 smoke.route | grep -E "^Pub/Sub stats"
echo "perf smoke: every message delivered"

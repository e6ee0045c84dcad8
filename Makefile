# tern — the commands a developer needs. `make run` starts the server on 4222 with
# nats-server's defaults; `make test` is what CI runs.

CARGO ?= cargo
# tern ships as one statically linked binary, like nats-server: no libc.so to load, and
# 1.8 MB resident when idle instead of 2.6 MB (most of which is libc.so's pages).
TARGET ?= x86_64-unknown-linux-gnu
STATIC_FLAGS = -C target-feature=+crt-static -C relocation-model=static
TERN_BIN ?= $(CURDIR)/target/$(TARGET)/release/tern
PYTHON ?= python3
# The nats-py tests run in a virtual environment of their own, made by the first `make test`
# (from $(PYTHON), which needs its venv module: Debian's python3-venv) with this nats-py.
VENV ?= $(CURDIR)/target/venv
NATS_PY_VERSION = 2.16.0
VENV_STAMP = $(VENV)/.nats-py-$(NATS_PY_VERSION)

.PHONY: run build test lint fmt fuzz fuzz-seeds static bench compare compare-js attacks flamegraph clean

run: build
	$(TERN_BIN)

build:
	RUSTFLAGS="$(STATIC_FLAGS)" $(CARGO) build --release --target $(TARGET)

# Unit tests, raw-protocol tests (proto-tests/, against tern and, when installed, nats-server),
# the JetStream fixtures replayed on the wire against tern and against nats-server (so they
# stay true; skipped without it unless TERN_REQUIRE_REFERENCE=1), the JetStream crash trials
# (SIGKILL at random points: publishers and a durable consumer, with both sync settings; prints
# the trial counts and its seed, CRASH_ARGS e.g. "--seed N --trials 50") and the real-client
# tests (nats-py, from $(VENV); JetStream faults too: damaged segments, a full or read-only
# store, which mount a tmpfs when run as root).
JS_FIXTURES = proto-tests/jetstream/capture.py --check --jobs 4
test: build $(VENV_STAMP)
	$(CARGO) test --release
	$(PYTHON) $(JS_FIXTURES) --tern --server-bin $(TERN_BIN)
	$(PYTHON) $(JS_FIXTURES) --reference
	$(PYTHON) proto-tests/jetstream/crash.py --server-bin $(TERN_BIN) $(CRASH_ARGS)
	$(MAKE) --no-print-directory fuzz-seeds
	TERN_BIN=$(TERN_BIN) $(VENV)/bin/python -m unittest discover -s proto-tests/clients -t proto-tests/clients -v
	$(CARGO) test --release --manifest-path $(BENCH_MANIFEST)
	$(CARGO) build --release --manifest-path $(BENCH_MANIFEST)
	TERN_BIN=$(TERN_BIN) perf/smoke.sh

# The virtual environment, made when missing (or when NATS_PY_VERSION changed): a failed
# attempt leaves no stamp, so the next run starts it over.
$(VENV_STAMP):
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  echo "make test: '$(PYTHON) -m venv' cannot make a virtual environment (no venv/ensurepip module)." >&2; \
	  echo "  Debian/Ubuntu: apt-get install python3-venv (or run make test PYTHON=<a python3 with venv>)." >&2; \
	  exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check nats-py==$(NATS_PY_VERSION)
	touch $@

# Fuzz the parser, the protocol handling, the config reader, the JetStream API (JSON reader,
# publishes, acks, restarts), file store recovery from any segment/index files, and consumer
# state recovery: libFuzzer (libfuzzer-sys) built by the stable toolchain with LLVM's coverage
# passes, no cargo-fuzz or nightly needed. New inputs go to a scratch corpus; the committed
# seeds in proto-tests/fuzz/corpus/<target> are only read (add minimized crashers there).
# Each target runs FUZZ_SECONDS; FUZZ_TARGETS picks some, e.g. `make fuzz FUZZ_TARGETS=segments`.
# `make test` builds the same targets without instrumentation and runs every seed once
# (`fuzz-seeds`): the crashers stay fixed and the targets keep compiling.
FUZZ_SECONDS ?= 600
FUZZ_WORK ?= /tmp/tern-fuzz
FUZZ_TARGETS ?= parser protocol config jsapi segments consumer_state
FUZZ_MANIFEST := proto-tests/fuzz/Cargo.toml
FUZZ_DIR := $(CURDIR)/proto-tests/fuzz/target
FUZZ_COVERAGE = -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks
fuzz:
	RUSTFLAGS="$(FUZZ_COVERAGE)" $(CARGO) build --release --target $(TARGET) \
	  --manifest-path $(FUZZ_MANIFEST) --target-dir $(FUZZ_DIR)/coverage --bins
	set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_WORK)/$$t; \
	  $(FUZZ_DIR)/coverage/$(TARGET)/release/$$t $(FUZZ_WORK)/$$t proto-tests/fuzz/corpus/$$t \
	    -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FUZZ_WORK)/$$t-; \
	done

fuzz-seeds:
	$(CARGO) build --release --manifest-path $(FUZZ_MANIFEST) --target-dir $(FUZZ_DIR) --bins
	@for t in $(FUZZ_TARGETS); do \
	  out=$$($(FUZZ_DIR)/release/$$t -runs=0 proto-tests/fuzz/corpus/$$t 2>&1) || { \
	    echo "$$out" | tail -n 30; echo "fuzz-seeds: $$t failed on a seed"; exit 1; }; \
	  echo "fuzz-seeds: $$t: $$(ls proto-tests/fuzz/corpus/$$t | wc -l) seeds run, no crash"; \
	done

# perf/: the load generator (tern-bench), the side-by-side comparison with nats-server
# (writes perf/RESULTS.md), the attacks (writes perf/ATTACKS.md), a flamegraph of one
# scenario, and the static binary.
BENCH_MANIFEST := perf/bench/Cargo.toml
SCENARIO ?= c
COMPARE_OUT ?= perf/RESULTS.md

bench:
	$(CARGO) build --release --manifest-path $(BENCH_MANIFEST)
	$(CARGO) test --release --manifest-path $(BENCH_MANIFEST)

compare: build bench
	TERN_BIN=$(TERN_BIN) $(PYTHON) perf/compare.py $(COMPARE_ARGS) --out $(COMPARE_OUT)
	@printf '\n' >> $(COMPARE_OUT); cat perf/PROFILE.md >> $(COMPARE_OUT)

# The JetStream scenarios alone (issues 11 and 12: publish, replay, push, pull+ack, kv, a
# restart with 10 million stored messages), both servers with -js and a fresh store; not part
# of `make test`. ~10 min; COMPARE_JS_ARGS e.g. "--pairs 1" or "--quick".
COMPARE_JS_OUT ?= perf/COMPARE-JS.md
compare-js: build bench
	TERN_BIN=$(TERN_BIN) $(PYTHON) perf/compare.py --scenarios js $(COMPARE_JS_ARGS) --out $(COMPARE_JS_OUT)

# The attacks of issue 9 (a stalled subscriber, monitoring abuse, fd exhaustion, a hash flood),
# tern and nats-server side by side; ~12 min. ATTACKS_ARGS e.g. "--attacks stall --reps 1".
ATTACKS_OUT ?= perf/ATTACKS.md
attacks: build
	$(CARGO) build --release --manifest-path $(BENCH_MANIFEST)
	TERN_BIN=$(TERN_BIN) $(PYTHON) perf/attacks.py $(ATTACKS_ARGS) --out $(ATTACKS_OUT)

flamegraph: bench
	$(CARGO) build --profile profiling
	TERN_BIN=$(CURDIR)/target/profiling/tern perf/flamegraph.sh $(SCENARIO)

# The tiny static binary: built for size, stripped, and resolving IP addresses, localhost
# and /etc/hosts only (no getaddrinfo; see src/util/resolve.rs). Prints its size.
static:
	RUSTFLAGS="$(STATIC_FLAGS)" $(CARGO) build --profile static --no-default-features --target $(TARGET)
	@file target/$(TARGET)/static/tern
	@ls -l target/$(TARGET)/static/tern | awk '{printf "static binary: %s bytes (%.2f MiB)\n", $$5, $$5/1048576}'

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean

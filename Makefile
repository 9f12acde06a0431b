# Tributary: build, test, run. `make test` is the one test command (CI runs it).

SHELL := /bin/bash
export SERVICES_DIR ?= $(CURDIR)/.services
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
LOCAL := deploy/local

.PHONY: build test test-operate chaos unit services-up services-down run bench bench-gateway bench-pipeline fuzz clean-services

## One build for `test` and `run`: the binaries and the test targets together. Building the
## binaries alone resolves dependency features without the dev-dependencies, which recompiles
## most of the workspace on every switch between `make test` and `make run`.
build:
	$(CARGO) build --workspace --bins --tests

## Build everything, start Kafka and Cassandra if they are not running, run unit, property and
## end-to-end tests, stop what was started.
test: build
	bash $(LOCAL)/test-tools.sh
	bash $(LOCAL)/with-services.sh $(CARGO) test --workspace --no-fail-fast

## The operator checks alone: promtool, the rules' unit tests, manifests, a live Prometheus.
test-operate: build
	bash $(LOCAL)/test-tools.sh
	bash $(LOCAL)/with-services.sh $(CARGO) test --test operate

## The conservation drill, every fault (tests/chaos.rs): a broker and a Cassandra node of its
## own, SIGKILLs of each, of every worker role, a rebalance, HTTP sink failures, a poison record,
## an admin restart; prints the table (also in target/debug/chaos-table.md). ~10 minutes.
## CHAOS_EXACTLY_ONCE=0 runs the workers at-least-once to watch the drill catch duplicates.
chaos: build
	bash $(LOCAL)/with-services.sh $(CARGO) test --test chaos -- --ignored --nocapture chaos_drill_every_fault

## Pure tests only (no services).
unit:
	$(CARGO) test --workspace --lib

services-up:
	bash $(LOCAL)/kafka.sh install
	bash $(LOCAL)/cassandra.sh install
	bash $(LOCAL)/kafka.sh start
	bash $(LOCAL)/cassandra.sh start

services-down:
	bash $(LOCAL)/kafka.sh stop
	bash $(LOCAL)/cassandra.sh stop

clean-services:
	bash $(LOCAL)/kafka.sh clean
	bash $(LOCAL)/cassandra.sh clean

## Services plus every role in one process, with deploy/local/tributary.toml.
run: services-up build
	./target/debug/tributary --config $(LOCAL)/tributary.toml migrate
	./target/debug/tributary --config $(LOCAL)/tributary.toml all

## Fuzz the source layer's request path (headers + body → records) for FUZZ_SECONDS (default 600).
## Needs cargo-fuzz (installed from crates.io if missing) and a nightly toolchain (else stable
## with RUSTC_BOOTSTRAP=1).
FUZZ_SECONDS ?= 600
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/request_path
	cp tests/fixtures/*/*.json fuzz/corpus/request_path/ 2>/dev/null || true
	if rustup toolchain list 2>/dev/null | grep -q nightly; then \
	  cd fuzz && cargo +nightly fuzz run request_path -- -max_total_time=$(FUZZ_SECONDS) -max_len=65536; \
	else \
	  cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run request_path -- -max_total_time=$(FUZZ_SECONDS) -max_len=65536; \
	fi

## Benchmarks (release build, real services; figures beside baselines from the same run).
## BENCH_ARGS passes options, e.g. BENCH_ARGS="--soak-secs 600" for the gateway memory soak.
bench: bench-gateway bench-pipeline

bench-gateway:
	$(CARGO) build --release --workspace --bins
	bash $(LOCAL)/with-services.sh ./target/release/tributary-bench gateway $(BENCH_ARGS)

bench-pipeline:
	$(CARGO) build --release --workspace --bins
	bash $(LOCAL)/with-services.sh ./target/release/tributary-bench pipeline $(BENCH_ARGS)

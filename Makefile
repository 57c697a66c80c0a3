# Tributary developer entry points. README.md names two of them:
#   make up    bring the pipeline up on this machine and show it working
#   make test  run every test (installs what is missing, starts the local stack)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(HOME)/.cargo/bin:$(PATH)

STACK := infrastructure/local-stack.sh
# Reproducible builds in CI (the lock file is checked in).
CARGO_FLAGS := $(if $(CI),--locked,)

.PHONY: up down status test lint fmt build build-deps nextest stack bench-capture bench-consumer bench-query fuzz-capture crd image kind-up kind-down stress-capture stress-query dev faults cluster

## up: install what is missing, start the stack and the built workloads, show them working
up: build-deps
	$(STACK) up > /dev/null
	cargo build $(CARGO_FLAGS) --workspace --bins
	infrastructure/demo.sh up

## test: everything CI runs: formatting, lints, and every test against the real stack
# Doc tests run under cargo test; everything else under nextest (one process per
# test, parallel across binaries, a per-test time limit in .config/nextest.toml).
test: build-deps nextest stack lint
	set -a; eval "$$($(STACK) env)"; set +a; \
	cargo test $(CARGO_FLAGS) --workspace --doc; \
	cargo nextest run $(CARGO_FLAGS) --workspace --no-fail-fast

lint:
	cargo fmt --all --check
	cargo clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

build:
	cargo build $(CARGO_FLAGS) --workspace

build-deps:
	infrastructure/install-build-deps.sh

nextest:
	cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest

stack:
	$(STACK) up > /dev/null

## bench-capture: capture vs a bare axum handler under wrk (see BENCHMARKS.md)
bench-capture: build-deps stack
	command -v wrk >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	set -a; eval "$$($(STACK) env)"; set +a; cargo bench -p tributary-capture --bench capture_vs_bare

## bench-consumer: consumer vs a raw ClickHouse insert, and visibility under load (see BENCHMARKS.md)
bench-consumer: build-deps stack
	set -a; eval "$$($(STACK) env)"; set +a; cargo bench -p tributary-consumer --bench consumer_vs_raw_insert

## fuzz-capture: cargo-fuzz on capture's decoder for FUZZ_SECONDS (60), from fuzz/seeds (see SECURITY.md)
FUZZ_SECONDS ?= 60
fuzz-capture: build-deps
	command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	mkdir -p fuzz/corpus/capture_decode
	cd fuzz && cargo +nightly fuzz run capture_decode corpus/capture_decode seeds/capture_decode -- \
		-max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=2048

## dev: the whole pipeline in one process against the local stack, until Ctrl-C (tributary dev)
dev: build-deps stack
	cargo build $(CARGO_FLAGS) -p tributary-cli
	set -a; eval "$$($(STACK) env)"; set +a; target/debug/tributary dev

## faults: the fault suite in full (60 s outages, ten consumer kills), one fault at a time under load; prints the figures RELIABILITY.md records
faults: build-deps stack
	set -a; eval "$$($(STACK) env)"; set +a; TRIBUTARY_FAULTS=full TRIBUTARY_FAULT_KILLS=10 \
	  cargo nextest run $(CARGO_FLAGS) -p tributary-cli --test faults --test consumer_sigkill --no-capture -j 1

## cluster: kubectl apply of crds/examples/{minimal,full}.yaml run on this machine as a kubelet would (pods in network namespaces, Services, probes), SDK traffic, scaling, an upgrade; prints the figures (root, iproute2)
cluster: build-deps stack
	set -a; eval "$$($(STACK) env)"; set +a; \
	  cargo nextest run $(CARGO_FLAGS) -p tributary-cli --test cluster --no-capture

## stress-capture: ramp capture load in steps on loopback (release build), then the seed SLO verdicts (STRESS_STEPS, STRESS_STEP_SECS)
stress-capture: build-deps stack
	cargo build --release $(CARGO_FLAGS) -p tributary-cli
	set -a; eval "$$($(STACK) env)"; set +a; TRIBUTARY_BIN=target/release/tributary \
	  cargo run --release $(CARGO_FLAGS) -q -p tributary-tests --bin stress -- capture

## stress-query: load a month of events, then repeated uncached trends and funnels, then the seed SLO verdicts
stress-query: build-deps stack
	cargo build --release $(CARGO_FLAGS) -p tributary-cli
	set -a; eval "$$($(STACK) env)"; set +a; TRIBUTARY_BIN=target/release/tributary \
	  cargo run --release $(CARGO_FLAGS) -q -p tributary-tests --bin stress -- query

down:
	infrastructure/demo.sh stop
	$(STACK) down

status:
	$(STACK) status

## bench-query: trend and funnel latency on 10M events, uncached and cached (see BENCHMARKS.md)
bench-query: build-deps stack
	set -a; eval "$$($(STACK) env)"; set +a; cargo bench -p tributary-query --bench query_latency

## crd: regenerate crds/analyticspipeline.yaml (and the chart's copy) from the operator's types (a test fails while either is stale)
crd:
	cargo run -q -p tributary-operator -- crd -o crds/analyticspipeline.yaml
	cp crds/analyticspipeline.yaml charts/tributary-operator/files/analyticspipeline.yaml

## image: the container image (tributary + tributary-operator), tagged as the chart and examples expect (needs Docker)
IMAGE := ghcr.io/tributary-dev/tributary:0.1.0
image:
	docker build -t $(IMAGE) --build-arg REVISION=$$(git rev-parse HEAD) .

## kind-up: a kind cluster with the dependencies, the operator and the example pipeline, checked with one event (needs Docker, kind, kubectl, helm)
kind-up:
	infrastructure/kind/kind.sh up

## kind-down: delete the kind cluster
kind-down:
	infrastructure/kind/kind.sh down

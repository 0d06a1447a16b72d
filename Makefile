# Two entry points: `make demo` (run the product locally) and `make test` (everything CI checks).
# Both create .venv and install what they need; `make test` also installs Chromium and a CJK font
# (Debian packages, when run as root) for the browser tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest browser bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[hub,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sandbox.demo

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found and cannot be installed here: browser tests will be skipped"; fi; }
	@# a CJK font, so screenshots of the Chinese console show its text
	@fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null || \
	    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null; }; \
	  else echo "fonts-noto-cjk not installed: Chinese screenshots will show boxes"; fi; }

lint: $(STAMP)
	$(BIN)/ruff check sandbox tests bench data
	$(BIN)/ruff format --check sandbox tests bench data

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/ledger.py

clean:
	rm -rf $(VENV) .demo .bench

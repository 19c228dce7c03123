# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test check install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# editable_mode=compat: the top-level snakemake_*_plugin_vip packages stay visible to Snakemake's
# plugin discovery (pkgutil), which a default (import-hook) editable install hides.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[all]" --config-settings editable_mode=compat
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[test]" --config-settings editable_mode=compat
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The demo study (config/config.yaml) on the embedded local VIP server; run it again to resume.
demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores 1
	@echo
	@cat results/study_summary.txt
	@echo "Summary: $(CURDIR)/results/study_summary.csv and $(CURDIR)/results/study_summary.html"
	@echo "(the local VIP server keeps running for the next run, data in .vip-local/: 'make demo-stop' stops it)"

.PHONY: demo-stop
demo-stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -c "from vip_smk.server import LocalServer as S; s = S.attach('.vip-local'); s and s.stop(); print('local VIP server', 'stopped' if s else 'not running')"; fi

# The house's checks: lint and import order (ruff), the layers and no import cycle (import-linter,
# function-level imports included), types (mypy). CI fails on a layer broken upward.
check: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: check
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/transfer.py

clean: demo-stop
	rm -rf results .vip-local .snakemake

# Quick start: `make demo` and `make test`. Both create .venv at the repo root on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Pinned to the releases this project is developed and tested against.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The paper's analysis on this machine: a quick study of the paper's networks into the default store
# (a few minutes on 2 cores; re-running resumes and measures nothing twice), then the HTML report.
demo: $(STAMP)
	$(BIN)/dnnbench profile paper
	$(BIN)/dnnbench study paper --quick
	$(BIN)/dnnbench report

test: $(STAMP)
	$(BIN)/lint-imports
	@# pytest exits 5 when it collected no tests; that is not a failure of the project.
	$(BIN)/python -m pytest -n 2 -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python benchmarks/profile_all.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

# Two commands do everything: `make demo` and `make test`. Both create the environment they
# need when it is missing or stale (pyproject.toml or this file changed), then run.
#   .venv       Python 3.11, torch==2.13.0 (the CPU wheel on disk), snnexport[dev] editable
#   .venv-lava  Python 3.10 for lava-nc / lava-dl (added with the Lava target; same targets)

PYTHON311 ?= python3.11
VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.snnexport-installed
PIP       := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test lint env clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON311) >/dev/null || { echo "error: $(PYTHON311) not found on PATH; snnexport needs Python 3.11 (set PYTHON311=/path/to/python3.11)"; exit 1; }
	@if ! [ -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
		echo "creating $(VENV) with $(PYTHON311)"; rm -rf $(VENV); $(PYTHON311) -m venv $(VENV); fi
	$(PIP) install -q --upgrade pip
	# the CPU wheel first, so that no dependency pulls a CUDA build of torch
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,spikingjelly]'
	# SpikingJelly declares torchvision/torchaudio, which do not import beside this torch:
	# install it alone; its light dependency (loguru) comes with the [spikingjelly] extra
	$(PIP) install -q --no-deps spikingjelly==2.0.0
	# NeuroBench declares torchaudio (not used by its metrics, and it would replace this torch)
	$(PIP) install -q --no-deps neurobench==2.3.0
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snnexport demo

lint: $(STAMP)
	$(PY) -m ruff check snnexport tests bench

test: $(STAMP) lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

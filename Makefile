# Two commands do everything: `make demo` and `make test`. Both create the environment they
# need when it is missing or stale (pyproject.toml or this file changed), then run.
#   .venv       Python 3.11, torch==2.13.0 (the CPU wheel on disk), snnexport[dev] editable
#   .venv-lava  Python 3.10 for lava-nc / lava-dl (added with the Lava target; same targets)

PYTHON311 ?= python3.11
# python3.10 may be a pyenv shim without that version selected: fall back to pyenv's own copy
PYTHON310 ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10; do \
	$$p -c 'import sys' >/dev/null 2>&1 && { echo $$p; break; }; done)
LAVA_VENV := .venv-lava
LAVA_STAMP := $(LAVA_VENV)/.lava-installed
VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.snnexport-installed
PIP       := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test lint fuzz docs env lava-env browser clean

env: $(STAMP)

lava-env: $(LAVA_STAMP)

# Lava 0.10 / lava-dl 0.6 run only on Python 3.10 with numpy < 2 (lava-dl pins torch 2.3):
# their own environment, used through snnexport/lava/runner.py in a separate process
$(LAVA_STAMP): Makefile
	@[ -n "$(PYTHON310)" ] || { echo "error: no working python3.10 found (PATH or ~/.pyenv/versions/3.10*); the Lava target needs Python 3.10 (set PYTHON310=/path/to/python3.10)"; exit 1; }
	@if ! [ -x $(LAVA_VENV)/bin/python ]; then echo "creating $(LAVA_VENV) with $(PYTHON310)"; \
		rm -rf $(LAVA_VENV); $(PYTHON310) -m venv $(LAVA_VENV); fi
	$(LAVA_VENV)/bin/python -m pip --disable-pip-version-check install -q "numpy<2" lava-nc==0.10.0 lava-dl==0.6.0
	@touch $(LAVA_STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON311) >/dev/null || { echo "error: $(PYTHON311) not found on PATH; snnexport needs Python 3.11 (set PYTHON311=/path/to/python3.11)"; exit 1; }
	@if ! [ -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
		echo "creating $(VENV) with $(PYTHON311)"; rm -rf $(VENV); $(PYTHON311) -m venv $(VENV); fi
	$(PIP) install -q --upgrade pip
	# the CPU wheel first, so that no dependency pulls a CUDA build of torch
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,spikingjelly,ray,docs]'
	# SpikingJelly declares torchvision/torchaudio, which do not import beside this torch:
	# install it alone; its light dependency (loguru) comes with the [spikingjelly] extra
	$(PIP) install -q --no-deps spikingjelly==2.0.0
	# NeuroBench declares torchaudio (not used by its metrics, and it would replace this torch)
	$(PIP) install -q --no-deps neurobench==2.3.0
	# Norse declares torchvision (not imported by norse.torch, and it would replace this torch)
	$(PIP) install -q --no-deps norse==1.1.0
	# sinabs (Speck's memory formulas, checked against fit) declares samna, a downloader stub
	# never installed, and nir<=1.0.4: alone, with pbr, which it imports for its version
	$(PIP) install -q --no-deps sinabs==3.1.3 pbr==7.1.3
	@touch $(STAMP)

# the deployment report is checked in a real browser: Debian's chromium (tests/test_deploy.py)
browser:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium (report test)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }
	@command -v chromium >/dev/null || { echo "error: could not install chromium (apt-get)"; exit 1; }

# the main job: deploy the bundled MNIST-5k model to every target (100 samples on the Lava ones;
# the report trusts 20 or more), report in demo_out/
demo: $(STAMP) $(LAVA_STAMP)
	$(VENV)/bin/snnexport deploy examples/models/mnist5k_plif.pt --data mnist5k --targets all \
		--lava-samples 100 -o demo_out

# the documentation site (mkdocs.yml, docs/) into site/, offline; `make test` builds it in strict
# mode (tests/test_docs.py: a broken link or an undocumented CLI option fails)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d site

# ruff, then the import layering of pyproject.toml's [tool.importlinter] (imports only downward)
lint: $(STAMP)
	$(PY) -m ruff check snnexport tests bench examples
	$(VENV)/bin/lint-imports --no-cache

test: $(STAMP) $(LAVA_STAMP) browser lint
	$(PY) -m pytest -q

# >= 10,000 hypothesis-generated files through every model reader (tests run a few hundred)
fuzz: $(STAMP)
	$(PY) bench/fuzz_readers.py 10000

clean:
	rm -rf $(VENV) $(LAVA_VENV) .pytest_cache .ruff_cache demo_out

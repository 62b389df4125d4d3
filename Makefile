# Set-up and everyday commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch first: PyPI's Linux wheel is the CUDA build (~20 nvidia packages).
# PyTorch's CPU index when it answers; else (CI reaches only PyPI) the default index.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_CUDA ?= cu128
PYINSTALLER_SPEC ?= pyinstaller==6.22.3

.PHONY: run test demo lint bench clean install install-test gpu bundle packages bundle-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	@if $(BIN)/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" "$(TORCH_INDEX)" 2>/dev/null; then \
	  echo "Installing $(TORCH_SPEC) (CPU build) from $(TORCH_INDEX)"; \
	  $(BIN)/pip install -q --index-url "$(TORCH_INDEX)" "$(TORCH_SPEC)"; \
	else \
	  echo "$(TORCH_INDEX) is not reachable: installing $(TORCH_SPEC) from the default index"; \
	  $(BIN)/pip install -q "$(TORCH_SPEC)"; \
	fi
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/lama-desktop

demo: install
	$(BIN)/lama-desktop batch resources/samples/images --masks resources/samples/masks --out demo-out

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy lama_desktop/engine lama_desktop/cluster

test: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy lama_desktop/engine lama_desktop/cluster
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

bench: install-test
	$(BIN)/python benchmarks/run_all.py

# NVIDIA GPUs: replace the CPU build with PyTorch's CUDA build (TORCH_CUDA=cu126, cu128, ...).
gpu: install
	$(BIN)/pip install --force-reinstall "$(TORCH_SPEC)" --index-url https://download.pytorch.org/whl/$(TORCH_CUDA)
	$(BIN)/python -c "import torch; print('torch', torch.__version__, 'CUDA available:', torch.cuda.is_available())"

# dist/lama-desktop/: lama-desktop and lama-agent over one runtime (PyInstaller --onedir).
bundle: install
	$(BIN)/pip install -q "$(PYINSTALLER_SPEC)"
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller installers/lama-desktop.spec

# dist/*.tar.gz (unpack, ./install.sh) and dist/*.deb (apt install ./lama-desktop_*.deb).
packages: bundle
	installers/linux/package.sh dist/lama-desktop

# Build, package, then run the bundle from a temporary folder with a clean environment.
bundle-test: packages
	$(PYTHON) installers/smoke_test.py dist/lama-desktop-*-linux-*.tar.gz
	dpkg-deb --info dist/lama-desktop_*.deb
	dpkg-deb --contents dist/lama-desktop_*.deb | grep -E 'lama-agent.service|lama-desktop.desktop|opt/lama-desktop/lama-desktop$$'

clean:
	rm -rf $(VENV) build dist *.egg-info demo-out

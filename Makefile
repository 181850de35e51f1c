# kiloml — two commands on a fresh machine: `make demo` and `make test`.
# Each target sets up what it needs: the system toolchain (apt, as root), the
# virtual environment .venv with the pinned Python packages, then runs.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kiloml-installed
# clang, g++: the library's parity under other compilers and as C++ (tests/test_cflags_matrix.py);
# cmake: the generated CMakeLists and `kiloml export --format cmake` (tests/test_export_cmake.py).
# postgresql: the server tests/pg_server.py starts for `kiloml fleet ingest` against PostgreSQL.
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm clang g++ cmake postgresql
# Headless Chromium and its WebDriver: tests/test_report_browser.py renders report.html.
BROWSER_PACKAGES := chromium chromium-driver
# Real recordings of spoken digits for examples/spoken-digits (six voices).
SOUND_PACKAGES := asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav \
	asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav \
	asterisk-prompt-it-menardi-wav
# Packages are installed only when one of these commands is missing.
APT_PROBES   := arm-none-eabi-gcc qemu-system-arm clang g++ cmake chromium chromedriver
PYTEST_WORKERS ?= 2

.PHONY: setup system venv demo test package-test bench fuzz lint clean

setup: system venv

system:
	@missing=""; for c in $(APT_PROBES) gcc; do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	[ -f /usr/lib/arm-none-eabi/newlib/libc.a ] || missing="$$missing newlib"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -f /usr/share/asterisk/sounds/it_IT_m_Carlo/digits/0.wav ] && \
	[ -f /usr/share/asterisk/sounds/it_IT_f_Menardi/digits/0.wav ] || missing="$$missing sounds"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "kiloml: installing system packages (missing:$$missing)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) $(BROWSER_PACKAGES) $(SOUND_PACKAGES) gcc libc6-dev make >/dev/null; \
	  else \
	    echo "kiloml: missing$$missing; as root run: apt-get install --no-install-recommends $(APT_PACKAGES) $(BROWSER_PACKAGES) $(SOUND_PACKAGES)"; \
	  fi; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "kiloml needs Python 3.11, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(BIN)/kiloml run examples/watch/kiloml.toml

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) tests

bench: setup
	$(BIN)/python bench/run.py
	$(BIN)/python bench/trees.py
	$(BIN)/python bench/tree_compaction.py
	$(BIN)/python bench/dsp.py
	$(BIN)/python bench/nn.py
	$(BIN)/python bench/nn_parity.py
	$(BIN)/python bench/estimator.py
	$(BIN)/python bench/optimize.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/flag_matrix.py
	$(BIN)/python bench/two_models.py
	$(BIN)/python bench/monitor.py
	$(BIN)/python bench/monitor_eval.py
	$(BIN)/python bench/fleet_ingest.py
	$(BIN)/python bench/fleet_acceptance.py
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/blob.py
	$(BIN)/python bench/registry_demo.py

# The wheel in new virtual environments (tests/test_packaging.py): Python 3.11, 3.12 and
# 3.13 with the base install (a tree project; the one-line error naming each missing extra),
# and 3.11 with every extra (PyTorch from the machine's CPU wheel). make test runs the 3.11
# base install alone.
package-test: setup
	KILOML_PACKAGE_MATRIX=1 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -rP tests/test_packaging.py

# Long sweeps: the generated C under ASan/UBSan with 100,000 inputs per entry point and
# model family (bench/results/sanitizers.md), the fuzz campaign, and 10,000 hostile
# parameter blobs through kml_blob.c under ASan/UBSan.
fuzz: setup
	$(BIN)/python bench/sanitize.py --inputs 100000
	$(BIN)/python tests/fuzz/campaign.py --models 10000 --recordings 2000 --codegen
	KILOML_BLOB_FUZZ_BLOBS=10000 $(BIN)/python -m pytest -q -p no:xdist tests/test_blob_host.py -k hostile_blobs

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf build .pytest_cache .ruff_cache

# Offline Map Sync — developer commands. `make test` and `make demo` work as the first command
# on a fresh Debian 12 (QGIS 3.22), Debian 13 (QGIS 3.40) or sid (QGIS 3.44) machine that has
# make and git, as root or as a user who may use sudo (see the README's Commands).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# package needs no venv: the system Python is enough.
PY_SYS := $(shell [ -x $(VENV)/bin/python ] && echo $(VENV)/bin/python || echo python3)
# xauth: xvfb-run needs it, but xvfb only recommends it (and recommends are not installed).
# chromium and chromium-driver: the sign-in tests drive a real browser (selenium).
APT_PACKAGES := qgis python3-qgis qgis-providers python3-venv python3-gdal gdal-bin xvfb xauth chromium chromium-driver
# Installing needs root: as root directly, otherwise through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PLUGIN_NAME := offline_map_sync
# Files that make up the installed plugin (everything else is development material).
PLUGIN_FILES := metadata.txt __init__.py LICENSE README.md plugin ui resources
PROFILE ?= default
QGIS_PROFILE_DIR ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/$(PROFILE)

export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup test lint format package deploy clean demo screenshot stress bench

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: requirements-dev.txt Makefile
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  if [ -n "$(SUDO)" ] && ! command -v sudo >/dev/null; then \
	    echo "Installing them needs root: run this as root, or install sudo first." >&2; exit 1; \
	  fi; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@$(PY) -c "import qgis.core, osgeo.gdal; print('QGIS', qgis.core.Qgis.QGIS_VERSION, '/ GDAL', osgeo.gdal.__version__)"
	@touch $@

test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

DIST ?= dist
package:
	@$(PY_SYS) tests/tools/package.py "$(DIST)" $(PLUGIN_FILES)

# The main job, on the bundled reference service: take offline, edit both sides, sync.
demo: setup
	$(PY) -m tests.tools.demo $(DEMO_ARGS)

# QGIS (under Xvfb) with the panel and the demo map, saved as a PNG for reviewers.
screenshot: setup
	$(PY) -m tests.tools.screenshot $(SCREENSHOT_ARGS)

# The convergence-under-faults suite, long (ROUNDS=1000 SEED=1 by default; minutes).
ROUNDS ?= 1000
SEED ?= 1
stress: setup
	$(PY) tests/tools/stress.py --rounds $(ROUNDS) --seed $(SEED) --replicas 3

# Speed and memory figures, side by side with ogr2ogr and QGIS "Package layers" (minutes), and
# basemap tiles per second side by side with gdal_translate.
bench: setup
	$(PY) tests/tools/bench.py --json .bench/bench.json
	$(PY) tests/tools/bench_basemap.py --json .bench/bench-basemap.json

# Linear to a million: this plugin alone at 100k and 1M points in one run (tens of minutes).
.PHONY: bench-large
bench-large: setup
	$(PY) tests/tools/bench.py --sizes 100000,1000000 --only-ours --json .bench/bench-large.json

deploy:
	@mkdir -p $(QGIS_PROFILE_DIR)/python/plugins
	@ln -sfn $(CURDIR) $(QGIS_PROFILE_DIR)/python/plugins/$(PLUGIN_NAME)
	@echo "Linked $(CURDIR) -> $(QGIS_PROFILE_DIR)/python/plugins/$(PLUGIN_NAME)"

clean:
	rm -rf dist .pytest_cache .ruff_cache

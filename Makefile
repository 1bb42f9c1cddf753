# Two entry points: `make demo` and `make test`. Each does all the set-up it needs.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# hls.js for the player page, from npm (package.json pins it), copied where the origin serves it.
VENDOR := origin/web/vendor
VENDOR_STAMP := $(VENDOR)/.installed

.PHONY: setup system demo test lint bench-transcode bench-origin bench-edge bench-flashcrowd bench-packaging bench-loadtest bench-abr-fidelity chaos clean

setup: system $(STAMP) $(VENDOR_STAMP)

system:
	@scripts/ensure-system

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

$(VENDOR_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	mkdir -p $(VENDOR)
	cp node_modules/hls.js/dist/hls.min.js node_modules/hls.js/dist/hls.min.js.map $(VENDOR)/
	touch $(VENDOR_STAMP)

demo: setup
	$(BIN)/surge demo --data ./data

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# pytest exits 5 when it collects no test; make treats any non-zero exit as failure.
test: lint
	@scripts/ensure-system --browser
	$(BIN)/pytest -n auto --dist loadgroup

bench-transcode: setup
	$(BIN)/python bench/transcode/run.py

bench-origin: setup
	$(BIN)/python bench/origin/run.py

bench-edge: setup
	$(BIN)/python bench/edge/run.py

bench-flashcrowd: setup
	$(BIN)/python bench/flashcrowd/run.py $(ARGS)

# As root: worker hosts in network namespaces, each a Ray node pinned to its own core.
bench-packaging: setup
	$(BIN)/python bench/packaging/on_hosts.py $(ARGS)

bench-loadtest: setup
	$(BIN)/python bench/loadtest/run.py

# Faults under load (root: one scenario mounts a small tmpfs); results in docs/reliability.md.
chaos: setup
	$(BIN)/python bench/chaos/run.py

# As root: network namespaces and tc; Debian's chromium and chromedriver.
bench-abr-fidelity: setup
	$(BIN)/python bench/abr-fidelity/run.py

.PHONY: bench-tls
bench-tls: setup
	$(BIN)/python bench/tls/run.py

clean:
	rm -rf $(VENV) node_modules $(VENDOR) .pytest_cache .ruff_cache .mypy_cache *.egg-info

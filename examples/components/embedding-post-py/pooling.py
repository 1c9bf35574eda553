"""Sentence-embedding math in pure Python: masked mean pooling, L2
normalisation and cosine similarity of row pairs.

The same code runs inside the `embedding-post-py` component (CPython in
WebAssembly) and in plain CPython (a PyTriton Python backend in the
benchmark), so it imports nothing but the standard library: no numpy
exists for WASI.

It mirrors `examples/pooling/src/lib.rs` (`embed_and_score_spans`) step for
step, rounding to f32 at the same points as the Rust code (every value goes
through an `array('f')` where Rust stores an `f32`), so the results are
bit-identical to the Rust component's. Python computes each `+`, `*`, `/`
and `sqrt` of two f32 values in double precision and the store rounds it to
f32: for these operations that equals the f32 operation exactly.

Speed: the per-token, per-dimension work (adding a token's `dim` values to
the running sums) runs in C through `map` over memoryview slices, one Python
step per token (`array('f', list(map(...)))`: building the array from a list
is ~25% faster than from the iterator); only the sums of squares and dot products (a few times `dim`
per row) run as Python loops, because f32 rounding after each addition is
sequential.
"""

from array import array
from itertools import repeat
from math import sqrt
from operator import add, mul, truediv

# Rust's `1e-12f32` and `1e-9f32`: the f32 nearest to each constant.
_EPS_NORM = array("f", [1e-12])[0]
_EPS_COUNT = array("f", [1e-9])[0]


def _f32(x, _buf=array("f", [0.0])):
    """`x` rounded to the nearest f32 (as a Python float)."""
    _buf[0] = x
    return _buf[0]


def _sum_f32(values, _buf=array("f", [0.0])):
    """Sequential f32 sum, as Rust's `Iterator::<f32>::sum` (which starts at -0.0)."""
    s = -0.0
    for v in values:
        _buf[0] = s + v
        s = _buf[0]
    return s


def _max_eps(x, eps):
    """Rust's `x.max(eps)`: `eps` when `x` is smaller or NaN."""
    return x if x > eps else eps


def _as_f32_view(values):
    """A flat memoryview of f32 over `values` (an `array('f')`, a float32 buffer
    such as a numpy array, or any sequence of floats, which is converted)."""
    try:
        view = memoryview(values)
    except TypeError:
        return memoryview(array("f", values))
    if view.format in ("f", "<f", "=f") and view.c_contiguous:
        return view.cast("B").cast("f")
    return memoryview(array("f", values))


def unmasked_span(row_mask):
    """The token range `(first, last + 1)` of a sequence's non-zero mask
    entries, or `None` when every token is masked out.

    >>> unmasked_span([1, 1, 0, 1, 0, 0])
    (0, 4)
    >>> unmasked_span([0, 0]) is None
    True
    """
    n = len(row_mask)
    lo = 0
    while lo < n and not row_mask[lo]:
        lo += 1
    if lo == n:
        return None
    hi = n
    while not row_mask[hi - 1]:
        hi -= 1
    return lo, hi


def _mean_pool_span(tokens, span_mask, dim, zeros):
    """Mean of the `dim`-long token vectors in `tokens` whose `span_mask` entry is
    non-zero (Rust `mean_pool` with `batch = 1`)."""
    acc = zeros
    count = 0
    for s, m in enumerate(span_mask):
        if m == 0:
            continue
        count += 1
        acc = array("f", list(map(add, acc, tokens[s * dim : (s + 1) * dim])))
    denom = _max_eps(float(count), _EPS_COUNT)
    return array("f", list(map(truediv, acc, repeat(denom, dim))))


def _l2_normalize(row, dim):
    """`row` scaled to unit L2 norm (a row of zeros stays zero)."""
    norm = _f32(sqrt(_sum_f32(array("f", list(map(mul, row, row))))))
    norm = _max_eps(norm, _EPS_NORM)
    return array("f", list(map(truediv, row, repeat(norm, dim))))


def _cosine(a, b):
    """Cosine similarity of two equally long f32 rows."""
    dot = _sum_f32(array("f", list(map(mul, a, b))))
    na = _f32(sqrt(_sum_f32(array("f", list(map(mul, a, a))))))
    nb = _f32(sqrt(_sum_f32(array("f", list(map(mul, b, b))))))
    return dot / _max_eps(_f32(na * nb), _EPS_NORM)


def embed_and_score(read_rows, mask, batch, seq, dim):
    """Sentence embeddings and pair scores from a BERT `last_hidden_state`,
    reading only each sequence's unmasked token range.

    `mask` is the attention mask, `batch * seq` ints, row-major.
    `read_rows(b, lo, hi)` returns the `(hi - lo) * dim` hidden values of
    sequence `b`'s tokens `lo..hi` (an `array('f')`, a float32 buffer or a
    sequence of floats); it is called once per sequence that has an unmasked
    token.

    Returns `(embeddings, similarity)`: `array('f')` of `batch * dim` values
    (mean pooled over the mask, then L2-normalised) and of `batch // 2`
    cosine similarities of rows 0·1, 2·3, … (an odd last row is skipped).

    >>> hidden = [[3.0, 4.0], [100.0, 100.0], [0.0, 2.0], [0.0, 2.0]]
    >>> rows = lambda b, lo, hi: [v for t in hidden[b * 2 + lo : b * 2 + hi] for v in t]
    >>> emb, sim = embed_and_score(rows, [1, 0, 1, 1], 2, 2, 2)
    >>> [round(v, 6) for v in emb], [round(v, 6) for v in sim]
    ([0.6, 0.8, 0.0, 1.0], [0.8])
    """
    zeros = array("f", bytes(4 * dim))
    emb = array("f")
    for b in range(batch):
        row_mask = mask[b * seq : (b + 1) * seq]
        span = unmasked_span(row_mask)
        if span is None:
            emb.extend(zeros)
            continue
        lo, hi = span
        tokens = _as_f32_view(read_rows(b, lo, hi))
        if len(tokens) != (hi - lo) * dim:
            raise ValueError(
                f"read_rows({b}, {lo}, {hi}) returned {len(tokens)} values, "
                f"expected {(hi - lo) * dim}"
            )
        pooled = _mean_pool_span(tokens, row_mask[lo:hi], dim, zeros)
        emb.extend(_l2_normalize(pooled, dim))
    view = memoryview(emb)
    sims = array(
        "f",
        (
            _cosine(view[2 * p * dim : (2 * p + 1) * dim], view[(2 * p + 1) * dim : (2 * p + 2) * dim])
            for p in range(batch // 2)
        ),
    )
    view.release()
    return emb, sims

#!/usr/bin/env python3
"""Conduit through NVIDIA's own Python clients: `tritonclient` (gRPC and HTTP, from PyPI).

Usage (tests/all/tritonclient.rs runs it against a fresh `conduit dev`; `make clients`
installs tritonclient into .venv):

    .venv/bin/python tests/python/test_tritonclient.py \
        --grpc 127.0.0.1:7070 --http 127.0.0.1:7071 --key "$CONDUIT_API_KEY" \
        --other-key "$OTHER_TENANT_KEY" --reference testdata/minilm_reference.json \
        --sentences tests/data/minilm_sentences.json --max-request-bytes 1000000

The server must hold, for the tenant of --key: components `tokenizer@1.0.0`
(bert-tokenizer) and `embedding-post@1.0.0`, the model `minilm@1.0.0`
(testdata/minilm/model.onnx), the pipeline `paraphrase@1.0.0`
(examples/pipelines/paraphrase.toml) and a component `post` at versions 1.0.0, 1.2.0
and 2.0.0 (any components), and no inference may have run on it except through
this script. --other-key is a second tenant that has none of them. The server runs with
`--max-request-bytes` equal to this script's (the oversized request sends twice as much).

Each check prints one line (`ok N proto: what`). The first failure prints
`FAIL N proto: what` with the request, what was expected and what came back, and the
script exits 1 (`--keep-going`: run the rest too, exit 1 at the end).
`--protocols grpc` runs only one client.
"""
import argparse
import http.client
import json
import sys
import traceback
import urllib.error
import urllib.request

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc._utils import raise_error_grpc
from tritonclient.utils import InferenceServerException

TOLERANCE = 1e-4
PARAPHRASE = ("conduit_bay_area", "conduit_hq")  # the README pair
UNRELATED = ("conduit_bay_area", "cat_windowsill")
STEPS = {"paraphrase": ("tokenizer", "minilm", "embedding-post")}
MODELS = ("paraphrase", "tokenizer", "minilm", "embedding-post")
VERSION = "1.0.0"


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


# --- the reference --------------------------------------------------------------------


class Reference:
    def __init__(self, path, sentences_path):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        self.hidden = doc["hidden_size"]
        self.sentences = {s["id"]: s for s in doc["sentences"]}
        self.pairs = {(p["a"], p["b"]): p for p in doc["pairs"]}
        if sentences_path:
            with open(sentences_path, encoding="utf-8") as f:
                source = json.load(f)
            for s in source["sentences"]:
                ref = self.sentences.get(s["id"])
                expect(ref is not None and ref["text"] == s["text"],
                       f"{path} is stale: sentence `{s['id']}` differs from {sentences_path}; "
                       "rerun `make minilm-reference`")

    def text(self, sid):
        return self.sentences[sid]["text"]

    def last_hidden_state(self, sid):
        s = self.sentences[sid]
        return np.array(s["last_hidden_state"], dtype=np.float32).reshape(s["seq_len"], self.hidden)

    def embedding(self, sid):
        return np.array(self.sentences[sid]["embedding"], dtype=np.float64)

    def cosine(self, a, b):
        return self.pairs[(a, b)]["cosine"]


# --- one protocol ---------------------------------------------------------------------


def as_int(v):
    """protobuf JSON writes 64-bit integers as strings; Triton's HTTP JSON as numbers."""
    return int(v) if v not in (None, "") else 0


def shape_of(v):
    return [as_int(d) for d in v]


class Protocol:
    """The same calls through tritonclient.grpc or tritonclient.http, answers normalized."""

    def __init__(self, name, url, key, calls):
        self.name = name
        self.url = url
        self.key = key
        self.calls = calls  # successful inferences per model, both protocols together
        if name == "grpc":
            self.mod = grpcclient
            self.client = grpcclient.InferenceServerClient(url=url)
        else:
            self.mod = httpclient
            self.client = httpclient.InferenceServerClient(
                url=url, connection_timeout=60.0, network_timeout=300.0)

    def headers(self, key=None):
        return {"authorization": "Bearer " + (key or self.key)}

    def kw(self):
        return {"as_json": True} if self.name == "grpc" else {}

    def metadata(self, model, version="", key=None):
        return self.client.get_model_metadata(model, version, headers=self.headers(key), **self.kw())

    def config(self, model, version="", key=None):
        r = self.client.get_model_config(model, version, headers=self.headers(key), **self.kw())
        # gRPC answers ModelConfigResponse {config}; Triton's HTTP answers the config itself.
        if self.name == "grpc":
            return r.get("config", {})
        return r

    def stats(self, model, version=""):
        """(success count, success ns, compute_infer ns) of `model` at 1.0.0 (zeros if unused)."""
        r = self.client.get_inference_statistics(model, version, headers=self.headers(), **self.kw())
        rows = [m for m in r.get("model_stats", []) if m.get("name") == model]
        expect(all(m.get("version") == VERSION for m in rows),
               f"statistics of {model} name versions other than {VERSION}: {r}")
        if not rows:
            return 0, 0, 0, r
        s = rows[0].get("inference_stats", {})
        success = s.get("success", {})
        infer = s.get("compute_infer", {})
        return as_int(success.get("count")), as_int(success.get("ns")), as_int(infer.get("ns")), r

    def raw_stats(self, model="", version=""):
        """The model_stats rows of `model` ("" = all), ints normalized."""
        r = self.client.get_inference_statistics(model, version, headers=self.headers(), **self.kw())
        rows = r.get("model_stats", [])
        for m in rows:
            for k in ("inference_count", "execution_count", "last_inference"):
                m[k] = as_int(m.get(k))
            for d in m.get("inference_stats", {}).values():
                d["count"], d["ns"] = as_int(d.get("count")), as_int(d.get("ns"))
        return rows

    def counts(self, model):
        """(success, fail, inference_count, execution_count) of `model` at 1.0.0."""
        rows = self.raw_stats(model, VERSION)
        expect(len(rows) == 1, f"statistics of {model} {VERSION}: {rows}")
        s = rows[0].get("inference_stats", {})
        return (s.get("success", {}).get("count", 0), s.get("fail", {}).get("count", 0),
                rows[0]["inference_count"], rows[0]["execution_count"])

    def input(self, name, array, datatype=None, binary=True):
        datatype = datatype or {np.object_: "BYTES", np.int64: "INT64",
                                np.float32: "FP32"}[array.dtype.type]
        i = self.mod.InferInput(name, list(array.shape), datatype)
        if self.name == "http":
            i.set_data_from_numpy(array, binary_data=binary)
        else:
            i.set_data_from_numpy(array)
        return i

    def infer(self, model, inputs, version="", key=None, headers=None, binary=True, outputs=None,
              parameters=None, count=True, **client_kw):
        """Runs `model` on {name: ndarray}; returns ({output: ndarray}, {param: str}, version)."""
        tensors = [self.input(n, a, binary=binary) for n, a in inputs.items()]
        requested = None
        if outputs is not None:
            if self.name == "http":
                requested = [self.mod.InferRequestedOutput(o, binary_data=binary) for o in outputs]
            else:
                requested = [self.mod.InferRequestedOutput(o) for o in outputs]
        result = self.client.infer(
            model, tensors, model_version=version, outputs=requested,
            headers=self.headers(key) if headers is None else headers,
            parameters=parameters, **client_kw)
        if count:
            # A pipeline's steps are counted as themselves too (as Triton
            # counts an ensemble's composing models).
            for m in (model, *STEPS.get(model, ())):
                self.calls[m] = self.calls.get(m, 0) + 1
        response = result.get_response()
        if self.name == "grpc":
            names = [o.name for o in response.outputs]
            params = {k: v.string_param for k, v in response.parameters.items()}
            got_version = response.model_version
        else:
            names = [o["name"] for o in response.get("outputs", [])]
            params = dict(response.get("parameters", {}))
            got_version = response.get("model_version", "")
        return {n: result.as_numpy(n) for n in names}, params, got_version

    def live_ready(self):
        return self.client.is_server_live(), self.client.is_server_ready()

    def server_metadata(self):
        return self.client.get_server_metadata(**self.kw())

    def model_ready(self, model, key=None):
        return self.client.is_model_ready(model, headers=self.headers(key))


def texts(*rows):
    return np.array([[t.encode("utf-8")] for t in rows], dtype=np.object_)


def describe_error(e):
    return f"status {e.status()!r}, message {e.message()!r}"


def expect_error(p, what, call, grpc_codes, http_status, fragments):
    """`call` must raise InferenceServerException with the code and a message naming all
    `fragments` (case-insensitive; a tuple means any one of them)."""
    want_status = ([f"StatusCode.{c}" for c in grpc_codes] if p.name == "grpc"
                   else [str(http_status)])
    try:
        call()
    except InferenceServerException as e:
        status, message = e.status(), e.message() or ""
        expect(status in want_status,
               f"{what}: expected status {' or '.join(want_status)}, got {describe_error(e)}")
        for f in fragments:
            options = f if isinstance(f, tuple) else (f,)
            expect(any(o.lower() in message.lower() for o in options),
                   f"{what}: status {status} is right, but the message {message!r} does not "
                   f"mention {' or '.join(repr(o) for o in options)}")
        return f"{status}: {message}"
    except Exception as e:  # noqa: BLE001 - a transport error is a failure to report
        raise CheckFailed(f"{what}: expected status {' or '.join(want_status)}, the client "
                          f"raised {type(e).__name__}: {e}") from e
    raise CheckFailed(f"{what}: expected status {' or '.join(want_status)}, the request succeeded")


# --- the suite ------------------------------------------------------------------------


class Suite:
    def __init__(self, args):
        self.args = args
        self.ref = Reference(args.reference, args.sentences)
        self.n = 0
        self.failures = []
        self.calls = {}
        self.base = {}
        self.digests = {}

    def check(self, proto, what, fn):
        self.n += 1
        label = f"{self.n:2d} {proto:4s}: {what}"
        try:
            detail = fn()
        except CheckFailed as e:
            self.fail(label, str(e))
            return
        except InferenceServerException as e:
            self.fail(label, f"unexpected error from the server: {describe_error(e)}")
            return
        except Exception as e:  # noqa: BLE001
            self.fail(label, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
            return
        print(f"ok   {label}" + (f"  [{detail}]" if detail else ""), flush=True)

    def fail(self, label, message):
        print(f"FAIL {label}\n     {message}", flush=True)
        self.failures.append(label)
        if not self.args.keep_going:
            sys.exit(1)

    # ---- health and metadata

    def health(self, p):
        def live():
            live, ready = p.live_ready()
            expect(live and ready, f"is_server_live {live}, is_server_ready {ready}")
        self.check(p.name, "server live and ready", live)

        def server_metadata():
            m = p.server_metadata()
            expect(m.get("name") == "conduit", f"server name: {m}")
            expect(m.get("version"), f"no server version: {m}")
            ext = m.get("extensions", [])
            for e in ("model_configuration", "statistics", "binary_tensor_data"):
                expect(e in ext, f"extension `{e}` missing from {ext}")
            return f"{m['name']} {m['version']}"
        self.check(p.name, "get_server_metadata", server_metadata)

    def metadata(self, p):
        def tensors(items):
            return [(t.get("name"), t.get("datatype"), shape_of(t.get("shape", []))) for t in items]

        def paraphrase():
            m = p.metadata("paraphrase")
            expect(m.get("name") == "paraphrase", f"name: {m}")
            expect(VERSION in m.get("versions", []), f"versions: {m}")
            expect(tensors(m.get("inputs", [])) == [("text", "BYTES", [-1, 1])], f"inputs: {m}")
            expect(tensors(m.get("outputs", [])) == [("similarity", "FP32", [-1]),
                                                     ("truncated_tokens", "INT64", [-1]),
                                                     ("embeddings", "FP32", [-1, -1])],
                   f"outputs: {m}")
        self.check(p.name, "get_model_metadata('paraphrase')", paraphrase)

        def minilm():
            m = p.metadata("minilm")
            expect(m.get("name") == "minilm", f"name: {m}")
            expect(VERSION in m.get("versions", []), f"versions: {m}")
            expect(tensors(m.get("inputs", [])) == [(n, "INT64", [-1, -1]) for n in
                                                    ("input_ids", "attention_mask", "token_type_ids")],
                   f"inputs: {m}")
            expect(tensors(m.get("outputs", [])) == [("last_hidden_state", "FP32", [-1, -1, 384])],
                   f"outputs: {m}")
        self.check(p.name, "get_model_metadata('minilm')", minilm)

        def config_tensors(items):
            return [(t.get("name"), t.get("data_type"), shape_of(t.get("dims", []))) for t in items]

        def minilm_config():
            c = p.config("minilm")
            expect(c.get("name") == "minilm", f"name: {c}")
            mbs = as_int(c.get("max_batch_size"))
            expect(mbs > 0, f"minilm batches, so max_batch_size > 0 expected: {c}")
            expect(config_tensors(c.get("input", [])) == [(n, "TYPE_INT64", [-1]) for n in
                                                          ("input_ids", "attention_mask", "token_type_ids")],
                   f"inputs (dims without the batch dimension): {c}")
            expect(config_tensors(c.get("output", [])) == [("last_hidden_state", "TYPE_FP32", [-1, 384])],
                   f"outputs (dims without the batch dimension): {c}")
            digest = c.get("parameters", {}).get("conduit.digest", {}).get("string_value", "")
            expect(digest.startswith("blake3:"), f"parameters.conduit.digest: {c}")
            self.digests["minilm"] = digest
            return f"max_batch_size {mbs}"
        self.check(p.name, "get_model_config('minilm')", minilm_config)

        def paraphrase_config():
            c = p.config("paraphrase")
            expect(c.get("name") == "paraphrase", f"name: {c}")
            expect(as_int(c.get("max_batch_size")) == 0, f"a pipeline has max_batch_size 0: {c}")
            expect(config_tensors(c.get("input", [])) == [("text", "TYPE_STRING", [-1, 1])],
                   f"inputs: {c}")
            expect(config_tensors(c.get("output", [])) == [("similarity", "TYPE_FP32", [-1]),
                                                           ("truncated_tokens", "TYPE_INT64", [-1]),
                                                           ("embeddings", "TYPE_FP32", [-1, -1])],
                   f"outputs: {c}")
            digest = c.get("parameters", {}).get("conduit.digest", {}).get("string_value", "")
            expect(digest.startswith("blake3:"), f"parameters.conduit.digest: {c}")
            self.digests["paraphrase"] = digest
        self.check(p.name, "get_model_config('paraphrase')", paraphrase_config)

        def ready():
            expect(p.model_ready("paraphrase") is True, "is_model_ready('paraphrase') is not True")
            expect(p.model_ready("no-such-model") is False, "is_model_ready('no-such-model') is not False")
        self.check(p.name, "is_model_ready", ready)

    # ---- inference

    def paraphrase(self, p, a, b, **kw):
        out, params, version = p.infer("paraphrase", {"text": texts(self.ref.text(a), self.ref.text(b))}, **kw)
        return out, params, version

    def pipeline(self, p):
        def pair(a, b, test, binary):
            out, params, version = self.paraphrase(p, a, b, binary=binary,
                                                   outputs=["similarity", "embeddings"])
            sim, emb = out.get("similarity"), out.get("embeddings")
            expect(sim is not None and emb is not None, f"outputs: {sorted(out)}")
            expect(sim.dtype == np.float32 and sim.shape == (1,), f"similarity {sim.dtype} {sim.shape}")
            expect(emb.dtype == np.float32 and emb.shape == (2, 384), f"embeddings {emb.dtype} {emb.shape}")
            expect(version == VERSION, f"model_version {version!r}")
            s = float(sim[0])
            expect(test(s), f"similarity of {a!r} / {b!r} is {s:.4f}")
            ref = self.ref.cosine(a, b)
            expect(abs(s - ref) <= TOLERANCE, f"similarity {s:.6f} vs reference {ref:.6f}")
            for row, sid in enumerate((a, b)):
                d = float(np.abs(emb[row].astype(np.float64) - self.ref.embedding(sid)).max())
                expect(d <= TOLERANCE, f"embedding of {sid} differs from the reference by {d:.2e}")
            return s, params

        def readme():
            s, params = pair(*PARAPHRASE, lambda s: s > 0.5, True)
            for k in ("conduit.digest", "conduit.step.tokenize", "conduit.step.encode", "conduit.step.post"):
                expect(str(params.get(k, "")).startswith("blake3:"), f"response parameter {k}: {params}")
            if "paraphrase" in self.digests:
                expect(params["conduit.digest"] == self.digests["paraphrase"],
                       f"conduit.digest {params['conduit.digest']} is not the config's {self.digests['paraphrase']}")
            if "minilm" in self.digests:
                expect(params["conduit.step.encode"] == self.digests["minilm"],
                       f"conduit.step.encode {params['conduit.step.encode']} is not minilm's {self.digests['minilm']}")
            self.digests["paraphrase"] = params["conduit.digest"]
            return f"similarity {s:.4f}"
        self.check(p.name, "infer paraphrase, README pair: > 0.5, = reference, provenance params", readme)

        def unrelated():
            # Over HTTP in JSON (no binary tensors) both ways.
            s, _ = pair(*UNRELATED, lambda s: s < 0.3, False)
            return f"similarity {s:.4f}" + (" (JSON tensors)" if p.name == "http" else "")
        self.check(p.name, "infer paraphrase, unrelated pair: < 0.3, = reference", unrelated)

        def versions():
            digest = self.digests.get("paraphrase")
            expect(digest, "no digest from the earlier checks")
            seen = []
            for v in (VERSION, "latest", digest):
                out, params, version = self.paraphrase(p, *PARAPHRASE, version=v)
                expect(params.get("conduit.digest") == digest, f"model_version {v!r}: ran {params}")
                expect(version == VERSION, f"model_version {v!r}: response model_version {version!r}")
                expect(abs(float(out["similarity"][0]) - self.ref.cosine(*PARAPHRASE)) <= TOLERANCE,
                       f"model_version {v!r}: similarity {out['similarity']}")
                seen.append(v if len(v) < 20 else v[:19] + "…")
            return ", ".join(seen)
        self.check(p.name, "model_version as version, tag `latest` and digest", versions)

    def components_and_model(self, p):
        ids = ["conduit_bay_area", "mixed_unicode"]

        def tokenizer():
            out, params, _ = p.infer("tokenizer", {"text": texts(*(self.ref.text(i) for i in ids))})
            for name in ("input_ids", "attention_mask", "token_type_ids"):
                t = out.get(name)
                expect(t is not None and t.dtype == np.int64 and t.ndim == 2 and t.shape[0] == 2,
                       f"{name}: {None if t is None else (t.dtype, t.shape)}")
            for row, sid in enumerate(ids):
                s = self.ref.sentences[sid]
                n = s["seq_len"]
                got = out["input_ids"][row, :n].tolist()
                expect(got == s["input_ids"], f"{sid}: input_ids {got} vs reference {s['input_ids']}")
                expect(int(out["attention_mask"][row].sum()) == n,
                       f"{sid}: attention_mask {out['attention_mask'][row].tolist()}")
                expect(not out["token_type_ids"][row].any(), f"{sid}: token_type_ids not all 0")
            expect(str(params.get("conduit.digest", "")).startswith("blake3:"), f"params: {params}")
        self.check(p.name, "infer the `tokenizer` component: ids = reference", tokenizer)

        def run_minilm(sids, binary=True):
            n = max(self.ref.sentences[s]["seq_len"] for s in sids)
            pad = lambda key: np.array(  # noqa: E731
                [self.ref.sentences[s][key] + [0] * (n - self.ref.sentences[s]["seq_len"]) for s in sids],
                dtype=np.int64)
            inputs = {k: pad(k) for k in ("input_ids", "attention_mask", "token_type_ids")}
            out, params, version = p.infer("minilm", inputs, binary=binary)
            h = out.get("last_hidden_state")
            expect(h is not None and h.dtype == np.float32 and h.shape == (len(sids), n, 384),
                   f"last_hidden_state: {None if h is None else (h.dtype, h.shape)}")
            expect(params.get("conduit.digest") == self.digests.get("minilm", params.get("conduit.digest")),
                   f"conduit.digest {params}")
            worst = 0.0
            for row, sid in enumerate(sids):
                ref = self.ref.last_hidden_state(sid)
                d = float(np.abs(h[row, : ref.shape[0]] - ref).max())
                expect(d <= TOLERANCE, f"{sid}: last_hidden_state differs from the reference by {d:.2e}")
                worst = max(worst, d)
            return f"max diff {worst:.1e}"

        self.check(p.name, "infer bare `minilm`, one sentence: last_hidden_state = reference",
                   lambda: run_minilm(["conduit_bay_area"]))
        self.check(p.name, "infer bare `minilm`, long sentence (115 tokens)" +
                   (", JSON tensors" if p.name == "http" else ""),
                   lambda: run_minilm(["long_serving"], binary=False))
        self.check(p.name, "infer bare `minilm`, padded batch of 4: real positions = reference",
                   lambda: run_minilm(["short", "mixed_unicode", "cafe_french", "kitten_sun"]))

    # ---- statistics

    def baseline(self, p):
        def zeroed():
            # Triton answers an entry for every ready model version, zeroed while unused.
            names = {m.get("name") for m in p.raw_stats()}
            expect(names >= set(MODELS), f"get_inference_statistics() lists {sorted(names)}")
            for m in MODELS:
                rows = p.raw_stats(m)
                expect(rows and rows[0].get("version") == VERSION, f"stats of {m}: {rows}")
                if self.calls.get(m, 0) == 0:
                    expect(rows[0]["inference_count"] == 0 and rows[0]["execution_count"] == 0,
                           f"unused {m}: {rows[0]}")
            return "model_stats[0] of each of " + ", ".join(MODELS)
        self.check(p.name, "statistics of loaded, unused models: zeroed entries", zeroed)

        def base():
            for m in MODELS:
                count, _, _, _ = p.stats(m)
                self.base[m] = count - self.calls.get(m, 0)
            return ", ".join(f"{m} {c}" for m, c in self.base.items())
        self.check(p.name, "get_inference_statistics before inference", base)

    def statistics(self, p):
        for model in MODELS:
            def stats(model=model):
                expect(model in self.base, "no baseline")
                count, ns, infer_ns, raw = p.stats(model)
                want = self.base[model] + self.calls.get(model, 0)
                expect(count == want, f"success count {count}, expected {want} "
                       f"({self.base[model]} before + {self.calls.get(model, 0)} successful calls): {raw}")
                expect(ns > 0 and infer_ns > 0, f"success ns {ns}, compute_infer ns {infer_ns}: {raw}")
                return f"success {count}, compute_infer {infer_ns / 1e6:.0f} ms"
            self.check(p.name, f"get_inference_statistics('{model}') counts every call", stats)

    # ---- bad requests

    def still_serving(self, p, detail):
        out, _, _ = self.paraphrase(p, *PARAPHRASE)
        expect(abs(float(out["similarity"][0]) - self.ref.cosine(*PARAPHRASE)) <= TOLERANCE,
               f"after the bad request, a good one answers {out['similarity']}")
        return detail

    def bad_requests(self, p):
        def case(what, call, grpc_codes, http_status, fragments):
            def run():
                detail = expect_error(p, what, call, grpc_codes, http_status, fragments)
                return self.still_serving(p, detail)
            self.check(p.name, f"{what} → {'/'.join(grpc_codes) if p.name == 'grpc' else http_status}", run)

        pair = texts(self.ref.text(PARAPHRASE[0]), self.ref.text(PARAPHRASE[1]))
        ids = self.ref.sentences["short"]
        minilm_inputs = {k: np.array([ids[k]], dtype=np.int64) for k in ("input_ids", "attention_mask")}

        case("unknown model",
             lambda: p.infer("no-such-model", {"text": pair}, count=False),
             ["NOT_FOUND"], 404, ["no-such-model", "not found"])
        case("unknown version",
             lambda: p.infer("paraphrase", {"text": pair}, version="9.9.9", count=False),
             ["NOT_FOUND"], 404, ["9.9.9", "not found"])
        case("metadata of an unknown model",
             lambda: p.metadata("no-such-model"),
             ["NOT_FOUND"], 404, ["no-such-model", "not found"])
        case("wrong datatype (FP32 text)",
             lambda: p.infer("paraphrase", {"text": np.zeros((2, 1), dtype=np.float32)}, count=False),
             ["INVALID_ARGUMENT"], 400, ["text", "BYTES", "FP32"])
        case("wrong shape (text [2])",
             lambda: p.infer("paraphrase", {"text": pair.reshape(2)}, count=False),
             ["INVALID_ARGUMENT"], 400, ["text", "shape"])
        case("missing input (minilm without token_type_ids)",
             lambda: p.infer("minilm", minilm_inputs, count=False),
             ["INVALID_ARGUMENT"], 400, ["token_type_ids"])
        case("unknown input name",
             lambda: p.infer("paraphrase", {"sentence": pair}, count=False),
             ["INVALID_ARGUMENT"], 400, ["sentence"])
        size = 2 * self.args.max_request_bytes
        big = texts("x" * size, "y")
        case(f"oversized request ({size / 1e6:.0f} MB > --max-request-bytes "
             f"{self.args.max_request_bytes})",
             lambda: p.infer("paraphrase", {"text": big}, count=False),
             ["OUT_OF_RANGE"], 413, [("too large", "limit", "exceed")])
        wrong = "cdk_" + "0" * 64
        case("wrong API key",
             lambda: p.infer("paraphrase", {"text": pair}, key=wrong, count=False),
             ["UNAUTHENTICATED"], 401, ["invalid API key"])
        case("no API key",
             lambda: p.infer("paraphrase", {"text": pair}, headers={}, count=False),
             ["UNAUTHENTICATED"], 401, ["API key"])
        case("no API key on get_model_metadata",
             lambda: p.client.get_model_metadata("paraphrase", headers={}),
             ["UNAUTHENTICATED"], 401, ["API key"])
        other = self.args.other_key
        case("another tenant infers `paraphrase`",
             lambda: p.infer("paraphrase", {"text": pair}, key=other, count=False),
             ["NOT_FOUND"], 404, ["paraphrase", "not found"])
        case("another tenant reads `paraphrase` metadata",
             lambda: p.metadata("paraphrase", key=other),
             ["NOT_FOUND"], 404, ["paraphrase", "not found"])
        case("another tenant names `minilm` by its digest",
             lambda: p.infer("minilm", {k: np.array([ids[k]], dtype=np.int64)
                                        for k in ("input_ids", "attention_mask", "token_type_ids")},
                             version=self.digests.get("minilm", "blake3:" + "0" * 64), key=other,
                             count=False),
             ["NOT_FOUND"], 404, ["minilm", "not found"])

        def other_ready():
            expect(p.model_ready("paraphrase", key=other) is False,
                   "is_model_ready('paraphrase') is True for another tenant")
        self.check(p.name, "another tenant: is_model_ready('paraphrase') is False", other_ready)

    # ---- Triton compatibility (issue #13)

    def triton_compat(self, p):
        pair = texts(self.ref.text(PARAPHRASE[0]), self.ref.text(PARAPHRASE[1]))

        def case(what, call, grpc_codes, http_status, fragments):
            self.check(p.name, f"{what} → {'/'.join(grpc_codes) if p.name == 'grpc' else http_status}",
                       lambda: expect_error(p, what, call, grpc_codes, http_status, fragments))

        def versions():
            m = p.metadata("post")
            expect(m.get("versions") == ["1.0.0", "1.2.0", "2.0.0"], f"versions: {m}")
            return f"versions {m['versions']}"
        self.check(p.name, "get_model_metadata lists every version", versions)

        def numeric():
            seen = []
            for asked, want in (("1", "1.2.0"), ("2", "2.0.0"), ("1.0", "1.0.0")):
                c = p.config("post", asked)
                got = c.get("parameters", {}).get("conduit.version", {}).get("string_value")
                expect(got == want, f"model_version {asked!r} resolved to {got!r}, expected {want}")
                expect(p.client.is_model_ready("post", asked, headers=p.headers()),
                       f"is_model_ready('post', {asked!r}) is not True")
                seen.append(f"{asked}→{got}")
            return ", ".join(seen)
        self.check(p.name, "Triton-style numeric versions name the highest N.x.y", numeric)
        case("numeric version with no release",
             lambda: p.config("post", "3"),
             ["NOT_FOUND"], 404, ["semver", "1.0.0, 1.2.0, 2.0.0"])

        def executions():
            mbs = as_int(p.config("minilm").get("max_batch_size"))
            sids = ["short"] * (mbs + 1)
            before = p.counts("minilm")
            inputs = {k: np.array([self.ref.sentences[s][k] for s in sids], dtype=np.int64)
                      for k in ("input_ids", "attention_mask", "token_type_ids")}
            p.infer("minilm", inputs)
            after = p.counts("minilm")
            delta = [a - b for a, b in zip(after, before)]
            # One request of max_batch_size + 1 rows runs as two batches.
            expect(delta == [1, 0, mbs + 1, 2],
                   f"(success, fail, inference_count, execution_count) moved by {delta}")
            return f"{mbs + 1} rows: 1 success, 2 executions"
        self.check(p.name, "execution_count counts batches, inference_count rows", executions)

        def steps():
            before = {m: p.counts(m) for m in MODELS}
            self.paraphrase(p, *PARAPHRASE)
            after = {m: p.counts(m) for m in MODELS}
            for m in MODELS:
                success = after[m][0] - before[m][0]
                expect(success == 1, f"{m}: success moved by {success} for one paraphrase call")
                expect(after[m][3] > before[m][3], f"{m}: execution_count did not move")
            return "paraphrase, tokenizer, minilm, embedding-post each +1"
        self.check(p.name, "a pipeline's steps are counted as their models", steps)

        def decode_failures():
            before = p.counts("minilm")
            ids = np.array([self.ref.sentences["short"]["input_ids"]], dtype=np.int64)
            tensors = []
            for name in ("input_ids", "attention_mask", "token_type_ids"):
                i = p.mod.InferInput(name, list(ids.shape), "INT32")
                i.set_data_from_numpy(ids.astype(np.int32))
                # A client that declares INT32 but sends INT64 bytes.
                if p.name == "grpc":
                    i._raw_content = ids.tobytes()
                else:
                    i._raw_data = ids.tobytes()
                    i._parameters["binary_data_size"] = len(i._raw_data)
                tensors.append(i)
            detail = expect_error(p, "INT64 bytes declared INT32",
                                  lambda: p.client.infer("minilm", tensors, headers=p.headers()),
                                  ["INVALID_ARGUMENT"], 400,
                                  ["declared INT32", "INT64", "does not match the data"])
            after = p.counts("minilm")
            expect(after[1] == before[1] + 1, f"fail count {before[1]} → {after[1]}")
            return detail
        self.check(p.name, "a request that cannot be decoded: named, and counted as a failure",
                   decode_failures)

        if p.name == "grpc":
            def bytes_as_ints():
                req = grpcclient.service_pb2.ModelInferRequest(model_name="paraphrase")
                t = req.inputs.add(name="text", datatype="BYTES", shape=[2, 1])
                t.contents.int_contents.extend([1, 2])
                def call():
                    # tritonclient always sends raw contents: its own stub sends typed ones.
                    try:
                        p.client._client_stub.ModelInfer(req, metadata=list(p.headers().items()))
                    except grpc.RpcError as e:
                        raise_error_grpc(e)
                return expect_error(p, "BYTES as int_contents", call,
                                    ["INVALID_ARGUMENT"], 400, ["bytes_contents", "int_contents"])
            self.check(p.name, "BYTES sent as int_contents → INVALID_ARGUMENT naming bytes_contents",
                       bytes_as_ints)

        for algorithm in ("gzip", "deflate"):
            def compressed(algorithm=algorithm):
                kw = ({"compression_algorithm": algorithm} if p.name == "grpc" else
                      {"request_compression_algorithm": algorithm,
                       "response_compression_algorithm": algorithm})
                out, _, _ = self.paraphrase(p, *PARAPHRASE, **kw)
                s = float(out["similarity"][0])
                expect(abs(s - self.ref.cosine(*PARAPHRASE)) <= TOLERANCE, f"similarity {s}")
                return f"similarity {s:.4f}"
            self.check(p.name, f"infer with {algorithm} compression", compressed)

        big = texts("x" * (2 * self.args.max_request_bytes), "y")
        kw = ({"compression_algorithm": "gzip"} if p.name == "grpc" else
              {"request_compression_algorithm": "gzip"})
        case("a gzip bomb (small on the wire, over the limit inflated)",
             lambda: p.infer("paraphrase", {"text": big}, count=False, **kw),
             ["RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", "OUT_OF_RANGE"], 413, ["limit"])

        def class_count():
            tensors = [p.input("text", pair)]
            outputs = [p.mod.InferRequestedOutput("similarity", class_count=1)]
            return p.client.infer("paraphrase", tensors, outputs=outputs, headers=p.headers())
        case("class_count (classification extension)", class_count,
             ["UNIMPLEMENTED"], 501, ["class_count"])
        case("load_model with a config override",
             lambda: p.client.load_model("minilm", headers=p.headers(),
                                         config=json.dumps({"max_batch_size": 2})),
             ["INVALID_ARGUMENT"], 400, ["config overrides are not supported"])

        def unloaded_step():
            p.client.unload_model("minilm", headers=p.headers())
            expect(p.model_ready("minilm") is False, "minilm is still ready after unload_model")
            detail = expect_error(p, "paraphrase with minilm unloaded",
                                  lambda: self.paraphrase(p, *PARAPHRASE, count=False),
                                  ["UNAVAILABLE"], 503, ["`minilm`", "unloaded", "encode"])
            # The tokenize step ran (and succeeded) before `encode` was refused.
            self.calls["tokenizer"] = self.calls.get("tokenizer", 0) + 1
            # Loading the pipeline loads its steps again, as Triton loads an
            # ensemble's composing models.
            p.client.load_model("paraphrase", headers=p.headers())
            expect(p.model_ready("minilm") is True, "minilm not ready after load_model('paraphrase')")
            self.still_serving(p, "")
            return detail
        self.check(p.name, "an unloaded model fails the pipeline that uses it, until loaded",
                   unloaded_step)

    def malformed_json(self, host):
        def post(body, headers):
            conn = http.client.HTTPConnection(host, timeout=60)
            try:
                conn.request("POST", "/v2/models/paraphrase/infer", body=body, headers=headers)
                r = conn.getresponse()
                return r.status, r.getheader("content-type", ""), r.read()
            finally:
                conn.close()

        auth = {"authorization": "Bearer " + self.args.key, "content-type": "application/json"}
        for what, body in (("malformed JSON", b'{"inputs": ['),
                           ("JSON that is not an inference request", b'{"inputs": 7}'),
                           ("a JSON array", b'[1,2,3]')):
            def run(body=body, what=what):
                status, ctype, raw = post(body, auth)
                req = f"POST /v2/models/paraphrase/infer {body!r}"
                expect(status == 400, f"{req}: expected 400, got {status} {raw[:300]!r}")
                try:
                    doc = json.loads(raw)
                except ValueError:
                    raise CheckFailed(f"{req}: 400 but the body is not JSON: {raw[:300]!r} "
                                      f"(content-type {ctype!r})")
                expect(isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"],
                       f"{req}: expected a JSON body {{\"error\": \"...\"}}, got {doc}")
                expect("application/json" in ctype, f"{req}: content-type {ctype!r}")
                if body.startswith(b"["):
                    expect("must be a JSON object" in doc["error"], f"{req}: {doc['error']!r}")
                return self.still_serving(self.protocols["http"], f"400: {doc['error']}") \
                    if "http" in self.protocols else f"400: {doc['error']}"
            self.check("http", f"{what} over raw HTTP → 400 {{\"error\"}}", run)

    def metrics(self, host):
        def refused():
            try:
                urllib.request.urlopen(f"http://{host}/metrics", timeout=60)
            except urllib.error.HTTPError as e:
                expect(e.code == 401, f"/metrics without a key: expected 401, got {e.code}")
                return "401 without a key"
            raise CheckFailed("/metrics answered without a key")
        self.check("http", "/metrics is not public", refused)

        def run():
            req = urllib.request.Request(f"http://{host}/metrics",
                                         headers={"Authorization": f"Bearer {self.args.key}"})
            with urllib.request.urlopen(req, timeout=60) as r:
                text = r.read().decode("utf-8")
            series = 'conduit_inference_request_success_total{tenant="default",model="paraphrase",version="1.0.0"}'
            lines = [line for line in text.splitlines() if line.startswith(series + " ")]
            expect(lines, f"/metrics has no `{series}` line; its conduit_inference lines:\n" +
                   "\n".join(line for line in text.splitlines() if "success_total" in line))
            value = float(lines[0].split()[-1])
            want = self.base.get("paraphrase", 0) + self.calls.get("paraphrase", 0)
            expect(value == want, f"{lines[0]}: expected {want}")
            return lines[0]
        self.check("http", "/metrics counts the successful `paraphrase` calls", run)

    # ---- all

    def run(self):
        a = self.args
        self.protocols = {}
        urls = {"grpc": a.grpc, "http": a.http}
        for name in a.protocols.split(","):
            self.protocols[name] = Protocol(name, urls[name], a.key, self.calls)
        first = next(iter(self.protocols.values()))
        self.baseline(first)
        for p in self.protocols.values():
            self.health(p)
            self.metadata(p)
            self.pipeline(p)
            self.components_and_model(p)
            self.statistics(p)
            self.bad_requests(p)
            self.triton_compat(p)
            self.statistics(p)
        if "http" in self.protocols:
            self.malformed_json(a.http)
            for p in self.protocols.values():
                self.statistics(p)
            self.metrics(a.http)
        if self.failures:
            print(f"{len(self.failures)} of {self.n} checks failed:", *self.failures, sep="\n  ")
            return 1
        print(f"all {self.n} checks passed")
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grpc", required=True, help="KServe v2 gRPC address, HOST:PORT")
    ap.add_argument("--http", required=True, help="KServe v2 HTTP address, HOST:PORT")
    ap.add_argument("--key", required=True, help="API key of the tenant holding the models")
    ap.add_argument("--other-key", required=True, help="API key of a second, empty tenant")
    ap.add_argument("--reference", default="testdata/minilm_reference.json")
    ap.add_argument("--sentences", default="tests/data/minilm_sentences.json")
    ap.add_argument("--max-request-bytes", type=int, default=1_000_000,
                    help="the server's --max-request-bytes")
    ap.add_argument("--protocols", default="grpc,http", help="grpc,http (default), grpc or http")
    ap.add_argument("--keep-going", action="store_true", help="run every check, fail at the end")
    args = ap.parse_args()
    for url in (args.grpc, args.http):
        if "://" in url:
            ap.error(f"give HOST:PORT, not a URL: {url}")
    return Suite(args).run()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Black-box fuzzing of a real ``conduit dev`` over HTTP, gRPC and the registry (issue 20).

Starts ``conduit dev`` on free loopback ports in a scratch directory, registers a few
real modules (the ``add`` and ``identity_i64`` test models, the ``tensor-ops`` component
and, with ``--model``, the tokenizer + MiniLM + embedding-post ``paraphrase`` pipeline),
checks a known-good request, then sends seeded, deterministic hostile cases, category by
category, each for its share of ``--seconds``:

  http-json      /v2/models/…/infer with mutated JSON (types, shapes, datatypes, nesting,
                 huge strings, unicode, duplicate keys, NaN, bad UTF-8, URLs, auth)
  http-binary    Triton's binary extension: Inference-Header-Content-Length and
                 binary_data_size that lie, truncated or extended tensor bytes
  http-raw       HTTP/1.1 on raw sockets: request lines, huge headers, bad chunked
                 encoding, Content-Length games, Content-Encoding and bounded gzip bombs,
                 partial (slowloris) requests held for ``--slow-cap`` seconds
  grpc-proto     KServe v2 and session RPCs with mutated valid protobuf (bit flips,
                 truncations, splices, out-of-range fields) and raw garbage (grpcio)
  grpc-framing   hand-written HTTP/2: gRPC length prefixes that lie, compressed flag
                 without grpc-encoding, bad HPACK, stream and frame abuse
  grpc-metadata  grpc-timeout garbage and overflow, huge and odd metadata (hand-written
                 HTTP/2, so the exact header reaches the server)
  registry       every registry RPC with absurd values: 17,000-character references,
                 grace_seconds overflow, uploads that lie, odd tenants and pages
  executor-hints each absurd ExecutorHints value once on add's bytes, then one call;
                 last, after the memory measurements, because it can take a server down

http-raw, grpc-proto, grpc-framing, grpc-metadata and registry begin with one case of
each of their kinds (a short run covers them all), then draw at random. Case N of a
category draws from ``random.Random(f"{seed}/{category}/{N}")``: ``--case CATEGORY:N``
replays it, ``--list N`` shows the labels.

Every answer is classified: HTTP status, gRPC status name, ``rst:``/``goaway:`` + HTTP/2
error, ``http:`` + status for an HTTP/2 answer without grpc-status, ``closed``,
``reset``, ``timeout``, or ``pending`` for a request left incomplete on purpose. A
**hang** is no answer within ``--case-timeout`` to a complete request (the server runs
with ``request_deadline_ms = 5000``, a ``--limits`` file, so a slow but healthy answer
comes first). A **crash** is the server exiting, failing the known-good probe (every
``--probe-every`` cases and at the end), passing the runaway caps (``--max-threads``,
``--max-rss-mib``, watched every 50 ms) or a case seeing its threads run away; the
server is then restarted (at most ``--max-restarts`` times) and the run goes on.
**Findings**: INTERNAL / 500 answers to client garbage (docs/api.md keeps INTERNAL for
traps and model failures), error messages over 1,024 bytes, panics in the server's log,
a well-framed HTTP request dropped without an answer, a grpc-timeout of a second or more
that expires at once (overflow) or one the gRPC spec does not allow served on ModelInfer,
a module registered with absurd executor hints that then does not serve.

Memory (VmRSS, /proc/PID/status): before fuzzing, right after the main categories, after
``--idle-seconds`` idle (warm component instances are released after 10 s idle).

    .venv/bin/python bench/fuzz_server.py --conduit target/release/conduit \\
        --wasm-dir target/wasm32-wasip2/release --model testdata/minilm/model.onnx \\
        --seconds 20 --seed 1 [--json OUT] [--strict]
    .venv/bin/python bench/fuzz_server.py ... --case registry:17   # one case, verbosely

Exit status: 1 with a crash or a hang (or, with ``--strict``, any finding), 2 when the
server cannot be started or the known-good request fails before fuzzing, else 0.
"""

from __future__ import annotations

import argparse
import base64
import copy
import gzip
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import grpc
import tritonclient.grpc.service_pb2 as kpb

REPO = Path(__file__).resolve().parent.parent
MESSAGE_LIMIT = 1024  # an error message longer than this (bytes) is a finding
IDLE_INSTANCE_TTL_S = 10  # docs/isolation.md: warm instances torn down after 10 s idle

GRPC_CODES = [
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
]
H2_ERRORS = [
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
    "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
    "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
]
INFER = "/inference.GRPCInferenceService/ModelInfer"
KSERVE_METHODS = [
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
    "ModelConfig", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad",
]
SESSION_METHODS = ["Open", "Heartbeat", "Run", "Fetch", "Release", "Close"]
REGISTRY_UNARY = [
    "PutManifest", "Resolve", "List", "Tag", "Untag", "Delete", "CollectGarbage",
    "CreateTenant", "CheckPush", "Usage", "ListTenants", "DeleteTenant", "RotateKey", "Whoami",
]


# ============================================================ outcomes and cases


@dataclass
class Outcome:
    """What one case got back."""

    code: str  # "400", "INVALID_ARGUMENT", "rst:PROTOCOL_ERROR", "closed", "timeout", …
    message: str = ""  # the error text the server sent (decoded)
    message_bytes: int = 0  # its length in bytes
    registered: bool = False  # (hint cases) the absurd manifest was accepted
    crash: str = ""  # the case saw the server run away (threads): a crash, restart it


@dataclass
class Case:
    label: str  # what the case does, short
    run: Callable[["Ctx"], Outcome]
    complete: bool = True  # False: incomplete on purpose, a timeout is expected ("pending")
    expect_answer: bool = False  # well-framed HTTP: being dropped without an answer is a finding
    # A case-specific oracle: (outcome, seconds) -> the kind of finding, or None.
    check: Optional[Callable[["Outcome", float], Optional[str]]] = None


# ============================================================ protobuf, by hand
# Registry and session messages are encoded here (no generated code): hostile values
# (a 10-byte varint in a uint32 field, an enum of 99) need the wire format anyway.


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pv(num: int, value: int) -> bytes:
    """A varint field."""
    return varint(num << 3) + varint(value)


def pb(num: int, value) -> bytes:
    """A length-delimited field (bytes, str or an encoded message)."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    return varint(num << 3 | 2) + varint(len(value)) + value


def pb_fields(data: bytes) -> list[tuple[int, int, object]]:
    """Top-level fields of a message: (number, wire type, int or bytes)."""
    out, i = [], 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(data, i)
        elif wt == 2:
            n, i = _read_varint(data, i)
            v, i = data[i:i + n], i + n
        elif wt == 1:
            v, i = data[i:i + 8], i + 8
        elif wt == 5:
            v, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, wt, v))
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


# ============================================================ HPACK and HTTP/2, by hand
# grpcio always frames correctly; framing and metadata abuse need our own HTTP/2. Requests
# use literal header fields without indexing (no Huffman, no table); answers are decoded
# fully (the server's HPACK uses Huffman strings and the dynamic table).

HPACK_STATIC = [
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
    (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
    ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
    ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
    ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
    ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
    ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
    ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
    ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
    ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
]
# RFC 7541 appendix B: the Huffman code is canonical, so the code length of each symbol
# (0-255, then EOS) defines it: 'a' + length - 5 per symbol.
_HUFF_LENGTHS = (
    "isxxxxxxxtzxxzxxxxxxxxzxxxxxxxxxbffhibdgffdgdbbbaaabbbbbbbcdkbhfibccccccccccccccccccc"
    "cccdcdioijbkabababbbaccbbbabcbaabccccckgjixprpprrrsrssssststtrstssssqrsrsstrqprrssqsrr"
    "tqrssqqrqsrssprrrsrrsvvporsruvvvwwvtuoqvwwvwtqqvvxwwwptpqrqqsrruuttvsvwvvwwwwwxwwwwwvz"
)


def _huffman_table() -> dict[tuple[int, int], int]:
    lengths = [ord(c) - ord("a") + 5 for c in _HUFF_LENGTHS]
    order = sorted(range(257), key=lambda s: (lengths[s], s))
    table, code, prev = {}, 0, lengths[order[0]]
    for k, sym in enumerate(order):
        if k:
            code = (code + 1) << (lengths[sym] - prev)
        prev = lengths[sym]
        table[(lengths[sym], code)] = sym
    return table


_HUFF = _huffman_table()


def huffman_decode(data: bytes) -> bytes:
    out, code, n = bytearray(), 0, 0
    for byte in data:
        for bit in range(7, -1, -1):
            code = (code << 1) | ((byte >> bit) & 1)
            n += 1
            if n >= 5:
                sym = _HUFF.get((n, code))
                if sym is not None:
                    if sym == 256:
                        raise ValueError("EOS in a Huffman string")
                    out.append(sym)
                    code = n = 0
    return bytes(out)


def hp_int(value: int, prefix: int, flags: int = 0) -> bytes:
    top = (1 << prefix) - 1
    if value < top:
        return bytes([flags | value])
    out, value = bytearray([flags | top]), value - top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hp_literal(name, value) -> bytes:
    """Literal header field without indexing, new name, no Huffman."""
    name = name.encode() if isinstance(name, str) else name
    value = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return b"\x00" + hp_int(len(name), 7) + name + hp_int(len(value), 7) + value


class Hpack:
    """An HPACK decoder (RFC 7541) for the server's answers."""

    def __init__(self) -> None:
        self.table: list[tuple[str, str]] = []
        self.size, self.max = 0, 4096

    def _int(self, data: bytes, i: int, prefix: int) -> tuple[int, int]:
        top = (1 << prefix) - 1
        v = data[i] & top
        i += 1
        if v < top:
            return v, i
        shift = 0
        while True:
            b = data[i]
            i += 1
            v += (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v, i

    def _str(self, data: bytes, i: int) -> tuple[str, int]:
        huff = data[i] & 0x80
        n, i = self._int(data, i, 7)
        raw = data[i:i + n]
        if len(raw) != n:
            raise ValueError("HPACK string past the block")
        raw = huffman_decode(raw) if huff else raw
        return raw.decode("latin-1"), i + n

    def _entry(self, idx: int) -> tuple[str, str]:
        if idx == 0:
            raise ValueError("HPACK index 0")
        if idx <= len(HPACK_STATIC):
            return HPACK_STATIC[idx - 1]
        return self.table[idx - len(HPACK_STATIC) - 1]

    def _add(self, name: str, value: str) -> None:
        self.table.insert(0, (name, value))
        self.size += len(name) + len(value) + 32
        self._evict()

    def _evict(self) -> None:
        while self.size > self.max and self.table:
            n, v = self.table.pop()
            self.size -= len(n) + len(v) + 32

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        out, i = [], 0
        while i < len(block):
            b = block[i]
            if b & 0x80:
                idx, i = self._int(block, i, 7)
                out.append(self._entry(idx))
            elif b & 0x40 or not b & 0x20:
                prefix = 6 if b & 0x40 else 4
                idx, i = self._int(block, i, prefix)
                name = self._entry(idx)[0] if idx else None
                if name is None:
                    name, i = self._str(block, i)
                value, i = self._str(block, i)
                out.append((name, value))
                if b & 0x40:
                    self._add(name, value)
            else:
                self.max, i = self._int(block, i, 5)
                self._evict()
        return out


def h2_frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (len(payload).to_bytes(3, "big") + bytes([ftype, flags])
            + (stream & 0x7FFFFFFF).to_bytes(4, "big") + payload)


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, END_HEADERS, PADDED, PRIO = 0x1, 0x4, 0x8, 0x20


def h2_headers(stream: int, block: bytes, end_stream: bool = True, max_frame: int = 16384) -> bytes:
    """HEADERS (+ CONTINUATION frames) carrying `block`."""
    parts = [block[k:k + max_frame] for k in range(0, len(block), max_frame)] or [b""]
    out = bytearray()
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        if k == 0:
            flags = (END_STREAM if end_stream else 0) | (END_HEADERS if last else 0)
            out += h2_frame(HEADERS, flags, stream, part)
        else:
            out += h2_frame(CONTINUATION, END_HEADERS if last else 0, stream, part)
    return bytes(out)


def h2_data(stream: int, body: bytes, end_stream: bool = True, max_frame: int = 16384) -> bytes:
    parts = [body[k:k + max_frame] for k in range(0, len(body), max_frame)] or [b""]
    return b"".join(
        h2_frame(DATA, END_STREAM if end_stream and k == len(parts) - 1 else 0, stream, p)
        for k, p in enumerate(parts))


def grpc_msg(message: bytes, flag: int = 0, length: Optional[int] = None) -> bytes:
    """A gRPC length-prefixed message; `length` lies about the size when given."""
    n = len(message) if length is None else length
    return bytes([flag]) + (n & 0xFFFFFFFF).to_bytes(4, "big") + message


class H2Conn:
    """One HTTP/2 connection to the gRPC port: send raw bytes, read one stream's answer."""

    def __init__(self, addr: tuple[str, int], timeout: float) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.hpack = Hpack()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False  # the server may have answered and closed: read what it said

    def _read(self, n: int, deadline: float) -> Optional[bytes]:
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def frame(self, deadline: float):
        head = self._read(9, deadline)
        if head is None:
            return None
        n = int.from_bytes(head[:3], "big")
        payload = self._read(n, deadline) if n else b""
        if payload is None:
            return None
        return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, payload

    def answer(self, stream: int, timeout: float, complete: bool) -> Outcome:
        """Reads until `stream` ends, is reset, or the connection goes away."""
        deadline = time.monotonic() + timeout
        headers: dict[str, str] = {}
        block, block_stream, goaway = bytearray(), 0, None
        try:
            while True:
                fr = self.frame(deadline)
                if fr is None:
                    break
                ftype, flags, sid, p = fr
                if ftype == SETTINGS and not flags & 1:
                    self.send(h2_frame(SETTINGS, 1, 0))
                elif ftype == PING and not flags & 1:
                    self.send(h2_frame(PING, 1, 0, p))
                elif ftype == GOAWAY:
                    last = int.from_bytes(p[:4], "big") & 0x7FFFFFFF
                    code = int.from_bytes(p[4:8], "big")
                    goaway = (_h2_error(code), p[8:].decode("latin-1"))
                    if last < stream:
                        return _msg_outcome("goaway:" + goaway[0], goaway[1])
                elif ftype == RST_STREAM and sid == stream:
                    return Outcome("rst:" + _h2_error(int.from_bytes(p[:4], "big")))
                elif ftype in (HEADERS, CONTINUATION):
                    if ftype == HEADERS:
                        if flags & PADDED:
                            p = p[1:len(p) - p[0]]
                        if flags & PRIO:
                            p = p[5:]
                        block, block_stream = bytearray(p), sid
                        ended = bool(flags & END_STREAM)
                    else:
                        block += p
                    if flags & END_HEADERS:
                        decoded = self.hpack.decode(bytes(block))
                        if block_stream == stream:
                            headers.update(decoded)
                            if ended:
                                return _grpc_headers_outcome(headers)
                elif ftype == DATA and sid == stream:
                    if p:  # keep the server's windows open
                        inc = len(p).to_bytes(4, "big")
                        self.send(h2_frame(WINDOW_UPDATE, 0, 0, inc)
                                  + h2_frame(WINDOW_UPDATE, 0, stream, inc))
                    if flags & END_STREAM:
                        return _grpc_headers_outcome(headers)
        except socket.timeout:
            return Outcome("timeout" if complete else "pending")
        except ConnectionResetError:
            return Outcome("reset")
        except (ValueError, IndexError) as e:
            return Outcome("fuzzer-error:hpack", str(e))
        if goaway:
            return _msg_outcome("goaway:" + goaway[0], goaway[1])
        if "grpc-status" in headers:
            return _grpc_headers_outcome(headers)
        return Outcome("closed")


def _h2_error(code: int) -> str:
    return H2_ERRORS[code] if code < len(H2_ERRORS) else f"0x{code:x}"


def _msg_outcome(code: str, message: str) -> Outcome:
    return Outcome(code, message[:2000], len(message.encode("utf-8", "replace")))


def _grpc_headers_outcome(headers: dict[str, str]) -> Outcome:
    if "grpc-status" in headers:
        s = headers["grpc-status"]
        code = GRPC_CODES[int(s)] if s.isdigit() and int(s) < len(GRPC_CODES) else f"grpc:{s}"
        raw = headers.get("grpc-message", "").encode("latin-1")
        message = urllib.parse.unquote_to_bytes(raw).decode("utf-8", "replace")
        return _msg_outcome(code, message)
    status = headers.get(":status", "?")
    return Outcome("no-grpc-status" if status == "200" else f"http:{status}")


# ============================================================ HTTP/1.1, by hand


class Http1:
    """A keep-alive connection to the HTTP port that sends raw bytes."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.sock: Optional[socket.socket] = None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def exchange(self, parts, timeout: float, complete: bool = True,
                 keep: bool = True) -> Outcome:
        """Sends `parts` (bytes, or (delay_s, bytes) pairs), reads one answer. A kept-alive
        connection the server closed in between is retried once on a fresh one."""
        reused = self.sock is not None
        out = self._exchange(parts, timeout, complete, keep)
        if reused and out.code in ("closed", "reset"):
            self.close()
            out = self._exchange(parts, timeout, complete, keep)
        return out

    def _exchange(self, parts, timeout: float, complete: bool, keep: bool) -> Outcome:
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        deadline = time.monotonic() + timeout
        if isinstance(parts, (bytes, bytearray)):
            parts = [parts]
        try:
            sock.settimeout(timeout)
            for part in parts:
                if isinstance(part, tuple):
                    delay, part = part
                    time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            pass  # it may have answered early: read it
        try:
            out, reusable = _read_http1(sock, deadline, complete)
        except ConnectionResetError:
            out, reusable = Outcome("reset"), False
        except OSError as e:
            out, reusable = Outcome("reset", str(e)), False
        if not (keep and reusable):
            self.close()
        return out


def _read_http1(sock: socket.socket, deadline: float, complete: bool) -> tuple[Outcome, bool]:
    buf = bytearray()

    def more() -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        sock.settimeout(left)
        chunk = sock.recv(262144)
        buf.extend(chunk)
        return bool(chunk)

    try:
        while b"\r\n\r\n" not in buf:
            if not more():
                return Outcome("closed" if not buf else "bad-response"), False
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return Outcome("bad-response", lines[0][:200]), False
        status = int(parts[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        buf[:] = rest
        body = b""
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(buf) < n:
                if not more():
                    break
            body = bytes(buf[:n])
        elif "chunked" in hdrs.get("transfer-encoding", ""):
            body = _dechunk(buf, more)
        elif status not in (204, 304):
            while more() and len(buf) < (16 << 20):
                pass
            body = bytes(buf)
            hdrs["connection"] = "close"
    except socket.timeout:
        return Outcome("timeout" if complete else "pending"), False
    out = Outcome(str(status))
    if status >= 400:
        try:
            if hdrs.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            message = json.loads(body)["error"]
            message = message if isinstance(message, str) else json.dumps(message)
        except (ValueError, KeyError, TypeError, OSError):
            message = body.decode("utf-8", "replace")
        out = _msg_outcome(str(status), message)
    return out, hdrs.get("connection", "").lower() != "close"


def _dechunk(buf: bytearray, more) -> bytes:
    body = bytearray()
    while True:
        while b"\r\n" not in buf:
            if not more():
                return bytes(body)
        line, _, rest = bytes(buf).partition(b"\r\n")
        n = int(line.split(b";")[0] or b"0", 16)
        buf[:] = rest
        while len(buf) < n + 2:
            if not more():
                return bytes(body + buf)
        body += buf[:n]
        del buf[:n + 2]
        if n == 0 or len(body) > (16 << 20):
            return bytes(body)


def http_request(ctx: "Ctx", method: str, path: str, body: bytes = b"",
                 headers: Optional[list[tuple[str, str]]] = None, auth: bool = True) -> bytes:
    """A well-framed HTTP/1.1 request."""
    hs = [("Host", f"{ctx.http[0]}:{ctx.http[1]}")]
    if auth:
        hs.append(("Authorization", f"Bearer {ctx.key}"))
    hs += headers if headers is not None else [("Content-Type", "application/json")]
    if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hs):
        hs.append(("Content-Length", str(len(body))))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n"
    return head.encode("utf-8", "surrogatepass") + body


# ============================================================ the server


class Server:
    """A `conduit dev` in a scratch directory, with the modules the cases use."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args, self.root = args, root
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = root / "dev.log"
        self.log_offset = 0
        self.digests: dict[str, str] = {}
        self.models: list[str] = []

    def start(self) -> None:
        data = self.root / "data"
        limits = self.root / "limits.toml"
        limits.write_text("[default]\nrequest_deadline_ms = 5000\n")
        env = dict(os.environ)
        if not env.get("ORT_DYLIB_PATH"):
            libs = sorted((REPO / ".venv" / "lib").glob(
                "python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*"))
            if libs:
                env["ORT_DYLIB_PATH"] = str(libs[0])
        env.setdefault("RUST_BACKTRACE", "0")
        cmd = [self.args.conduit, "dev", "--data-dir", str(data), "--listen", "127.0.0.1:0",
               "--http-listen", "127.0.0.1:0", "--limits", str(limits)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            text = self.log_path.read_text("utf-8", "replace")
            grpc_m = re.search(r"registry \(gRPC\): http://(\S+)", text)
            http_m = re.search(r"KServe v2 HTTP\): http://(\S+)", text)
            key_m = re.search(r"export CONDUIT_API_KEY=(\S+)", text)
            if grpc_m and http_m and key_m:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"conduit dev did not start:\n{text[-3000:]}")
            time.sleep(0.05)
        self.grpc = _hostport(grpc_m.group(1))
        self.http = _hostport(http_m.group(1))
        self.key = key_m.group(1)
        self.log_offset = self.log_path.stat().st_size

    def push(self, kind: str, path: Path, name: str) -> None:
        env = dict(os.environ, CONDUIT_REGISTRY=f"http://{self.grpc[0]}:{self.grpc[1]}",
                   CONDUIT_API_KEY=self.key)
        out = subprocess.run(
            [self.args.conduit, "push", kind, str(path), "--name", name, "--version", "1.0.0"],
            env=env, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"conduit push {kind} {path}: {out.stderr.strip()}")
        m = re.search(r"(blake3:[0-9a-f]{64})", out.stdout)
        self.digests[name] = m.group(1) if m else ""
        self.models.append(name)

    def register(self) -> None:
        wasm = Path(self.args.wasm_dir)
        self.push("model", REPO / "testdata/fixtures/add.onnx", "add")
        self.push("model", REPO / "testdata/fixtures/identity_i64.onnx", "ident")
        self.push("component", wasm / "tensor_ops.wasm", "ops")
        if self.args.model:
            self.push("component", wasm / "bert_tokenizer.wasm", "tokenizer")
            self.push("model", Path(self.args.model), "minilm")
            self.push("component", wasm / "embedding_post.wasm", "embedding-post")
            self.push("pipeline", REPO / "examples/pipelines/paraphrase.toml", "paraphrase")
        self.log_offset = self.log_path.stat().st_size

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, int]:
        """VmRSS, VmHWM (KiB) and Threads from /proc."""
        out = {}
        try:
            for line in open(f"/proc/{self.proc.pid}/status"):
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads"):
                    out[k] = int(v.split()[0])
        except (OSError, ValueError):
            pass
        return out

    def new_log(self) -> str:
        try:
            size = self.log_path.stat().st_size
        except OSError:
            return ""
        if size <= self.log_offset:
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            text = f.read(size - self.log_offset)
        self.log_offset = size
        return text.decode("utf-8", "replace")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rstrip("/").rpartition(":")
    return host, int(port)


class Watchdog(threading.Thread):
    """Kills the server when its threads or RSS run away (a fuzz case can make it spawn
    without bound); the run records it as a crash and restarts the server."""

    def __init__(self, server: Server, max_threads: int, max_rss_mib: int) -> None:
        super().__init__(daemon=True)
        self.server, self.max_threads, self.max_rss = server, max_threads, max_rss_mib << 10
        self.tripped: Optional[str] = None
        self.peak_threads = 0
        self.last: dict[str, int] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            st = self.server.status()
            if st:
                self.last = st
            threads, rss = st.get("Threads", 0), st.get("VmRSS", 0)
            self.peak_threads = max(self.peak_threads, threads)
            if threads > self.max_threads or rss > self.max_rss:
                self.tripped = f"{threads} threads, RSS {rss >> 10} MiB"
                try:
                    os.killpg(self.server.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return


@dataclass
class Ctx:
    """What cases need: addresses, key, channel, timeouts, caches."""

    server: Server
    timeout: float
    slow_cap: float
    channel: grpc.Channel = None
    conn: Http1 = None
    cache: dict = field(default_factory=dict)
    session_id: str = ""

    @property
    def http(self):
        return self.server.http

    @property
    def grpc_addr(self):
        return self.server.grpc

    @property
    def key(self):
        return self.server.key

    @property
    def md(self):
        return [("authorization", f"Bearer {self.key}")]

    def connect(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.conn is not None:
            self.conn.close()
        self.channel = grpc.insecure_channel(
            f"{self.grpc_addr[0]}:{self.grpc_addr[1]}",
            options=[("grpc.max_metadata_size", 4 << 20),
                     ("grpc.absolute_max_metadata_size", 4 << 20),
                     ("grpc.max_receive_message_length", 256 << 20),
                     ("grpc.max_send_message_length", 256 << 20),
                     ("grpc.enable_retries", 0)])
        self.conn = Http1(self.http)
        self.cache.pop("methods", None)

    def has(self, model: str) -> bool:
        return model in self.server.models


# ============================================================ the known-good probe


def probe(ctx: Ctx) -> Optional[str]:
    """A known-good call over HTTP and over gRPC; None when both answer correctly."""
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                   "data": [1, 2, 3, 4]}]}).encode()
    conn = Http1(ctx.http)
    try:
        out = conn.exchange(http_request(ctx, "POST", "/v2/models/add/infer", body), 5.0,
                            keep=False)
    finally:
        conn.close()
    if out.code != "200":
        return f"HTTP add: {out.code} {out.message[:200]}"
    req = kpb.ModelInferRequest(model_name="add")
    t = req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    t.contents.fp32_contents.extend([1, 2, 3, 4])
    call = ctx.channel.unary_unary(
        INFER, request_serializer=kpb.ModelInferRequest.SerializeToString,
        response_deserializer=kpb.ModelInferResponse.FromString)
    try:
        res = call(req, metadata=ctx.md, timeout=5.0)
    except grpc.RpcError as e:
        return f"gRPC add: {e.code().name} {(e.details() or '')[:200]}"
    y = struct.unpack("<4f", res.raw_output_contents[0])
    if y != (2.0, 4.0, 6.0, 8.0):
        return f"gRPC add answered {y}, not (2, 4, 6, 8)"
    return None


def warm_up(ctx: Ctx) -> Optional[str]:
    """One valid call of every module, so each is loaded before memory is first measured."""
    for model, doc in json_bases(ctx):
        conn = Http1(ctx.http)
        try:
            out = conn.exchange(http_request(ctx, "POST", f"/v2/models/{model}/infer",
                                             json.dumps(doc).encode()), 30.0, keep=False)
        finally:
            conn.close()
        if out.code != "200":
            return f"{model}: {out.code} {out.message[:200]}"
    return None


# ============================================================ hostile values

BIG_INTS = [-1, 0, 1, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
            -(2**63), -(2**63) - 1, 10**30]
UNICODE = ["é", "\u202e", "\u0000", "\ud800", "😀", "\uffff", "\u0301" * 1000, "\u200d",
           "ﬀ", "Ａ", "\r\n", "\x1b[31m", "%00", "../", "\\"]
SHAPES = [[], [-1, 4], [0, 4], [1, 0], [2**62, 2**62], [2**31, 2**31, 4], [1] * 17,
          [1] * 1000, [4.5], ["4"], [1, -4], [2**64], [-(2**63)], [1, 4, 1], [4], None, [None],
          [2**63 - 1, 4], [-1], [1, 2**40]]
DATATYPES = ["", "fp32", "FP64", "BYTES", "INT8", "BF16", "FP16", "BOOL", "UINT64", "INT64",
             "X" * 1000, "FP32\u0000", 5, None, ["FP32"], "FP32 ", "TYPE_FP32"]
VERSIONS = ["1.0.0+build", "01.0.0", "1.0.0-", "99999999999999999999.0.0", "1.0", "v1.0.0",
            "*", "^1.0", "1", "99999999999999999999", "-1", "1.0.0-" + "a" * 200, "latest",
            "blake3:" + "0" * 64, "blake3:zz", ""]


def long_string(rng: random.Random, big: bool = True) -> str:
    n = rng.choice([1024, 17000, 65536] + ([1 << 20] if big else []))
    return rng.choice(["a", "é", "😀", "\\", '"', "%", "\u0000"]) * n


def hostile_scalar(rng: random.Random):
    return rng.choice([
        lambda: None, lambda: True, lambda: False, lambda: rng.choice(BIG_INTS),
        lambda: 1e308, lambda: -1e308, lambda: 1.5, lambda: -0.0, lambda: "",
        lambda: rng.choice(UNICODE), lambda: [], lambda: {}, lambda: [[[]]],
        lambda: {"a": {"b": []}}, lambda: long_string(rng, big=False), lambda: [None] * 3,
    ])()


def hostile_str(rng: random.Random) -> str:
    """A name, reference, version or tag that tries everything."""
    n17 = "a" * 17000
    return rng.choice([
        lambda: "", lambda: "a", lambda: "a" * 128, lambda: "a" * 129, lambda: n17,
        lambda: "blake3:" + "f" * rng.choice([63, 64, 65, 17000]), lambda: "blake3:" + "g" * 64,
        lambda: "sha256:" + "0" * 64, lambda: "BLAKE3:" + "a" * 64,
        lambda: "default/" + rng.choice(["add", n17, ""]), lambda: "other/add", lambda: "/add",
        lambda: "add/", lambda: "a/b/c", lambda: "add@" + rng.choice(VERSIONS),
        lambda: "add:" + rng.choice(["prod", "latest", "1.0.0", n17, "", "a b", "ta g"]),
        lambda: "add@" + n17, lambda: "add:" + n17, lambda: n17 + "@1.0.0",
        lambda: "ａｄｄ", lambda: "add\u0000", lambda: "add\n", lambda: "\u202eadd",
        lambda: "😀" * 5000, lambda: "add%00", lambda: "..", lambda: ".", lambda: "-",
        lambda: "_", lambda: "\ud800", lambda: "add@1.0.0", lambda: "ADD", lambda: " add",
        lambda: "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randrange(1, 300))),
    ])()


def pick(rng: random.Random, index: int, kinds: list):
    """The case's kind: each kind once, in order, for the first cases (a short run covers
    them all), then drawn at random (repeats in `kinds` weigh the draw)."""
    first = list(dict.fromkeys(kinds))
    return first[index] if index < len(first) else rng.choice(kinds)


def bit_flip(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One protobuf-level mutation of `data`."""
    b = bytearray(data)
    op = rng.choice(["flip", "byte", "truncate", "insert", "delete", "dup", "append", "varint"])
    if not b:
        op = "append"
    if op == "flip":
        for _ in range(rng.randint(1, 8)):
            k = rng.randrange(len(b) * 8)
            b[k // 8] ^= 1 << (k % 8)
    elif op == "byte":
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.choice([0, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    elif op == "truncate":
        del b[rng.randrange(len(b)):]
    elif op == "insert":
        k = rng.randrange(len(b) + 1)
        b[k:k] = rng.randbytes(rng.randint(1, 16))
    elif op == "delete":
        k = rng.randrange(len(b))
        del b[k:k + rng.randint(1, 16)]
    elif op == "dup":
        k = rng.randrange(len(b))
        b[k:k] = b[k:k + rng.randint(1, 64)]
    elif op == "append":  # an unknown or mistyped field
        num = rng.choice([1, 2, 5, 6, 7, 1000, 536870911])
        b += varint(num << 3 | rng.choice([0, 1, 2, 3, 4, 5, 6, 7])) + rng.randbytes(
            rng.randint(0, 12))
    else:  # an overlong varint: 10 bytes of 0xff
        k = rng.randrange(len(b) + 1)
        b[k:k] = b"\xff" * 10
    return bytes(b), op


# ============================================================ category: http-json


def json_bases(ctx: Ctx) -> list[tuple[str, dict]]:
    bases = [
        ("add", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                             "data": [1, 2, 3, 4]}], "outputs": [{"name": "y"}]}),
        ("ident", {"inputs": [{"name": "ids", "shape": [2, 3], "datatype": "INT64",
                               "data": [1, 2, 3, 4, 5, 6]}]}),
        ("ops", {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32",
                             "data": [1.5, 2, 3]}], "parameters": {"op": "copy"}}),
    ]
    if ctx.has("paraphrase"):
        bases.append(("paraphrase", {"inputs": [{"name": "text", "shape": [2, 1],
                                                 "datatype": "BYTES",
                                                 "data": ["a cat sits", "a cat is sitting"]}],
                                     "outputs": [{"name": "similarity"}]}))
    return bases


def _paths(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, path + (k,))
    elif isinstance(obj, list):
        for k, v in enumerate(obj):
            yield from _paths(v, path + (k,))


def _set(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def _input(doc: dict, rng: random.Random) -> dict:
    ins = doc.get("inputs")
    if isinstance(ins, list) and ins and isinstance(ins[0], dict):
        return rng.choice(ins)
    return {}


def json_mutation(rng: random.Random, doc: dict, model: str) -> tuple[str, Optional[str]]:
    """Mutates `doc` in place; returns a label and maybe a new URL path."""
    kind = rng.choice(["node", "shape", "datatype", "data", "name", "outputs", "params",
                       "top", "url", "big"])
    inp = _input(doc, rng)
    if kind == "node":
        paths = [p for p in _paths(doc) if p] or [("inputs",)]
        p = rng.choice(paths)
        v = hostile_scalar(rng)
        _set(doc, p, v)
        return f"{'.'.join(map(str, p))}={_short(v)}", None
    if kind == "shape":
        inp["shape"] = copy.deepcopy(rng.choice(SHAPES))
        return f"shape={_short(inp['shape'])}", None
    if kind == "datatype":
        inp["datatype"] = rng.choice(DATATYPES)
        return f"datatype={_short(inp['datatype'])}", None
    if kind == "data":
        data = inp.get("data", [])
        data = data if isinstance(data, list) else [data]
        v = rng.choice([
            lambda: data[:-1], lambda: data + data, lambda: [data], lambda: [[x] for x in data],
            lambda: ["1"] * len(data), lambda: [True] * len(data),
            lambda: [1e39] * len(data), lambda: [2**63] * len(data),
            lambda: [-(2**64)] * len(data), lambda: [0.5] * len(data), lambda: [None] * len(data),
            lambda: list(range(100000)), lambda: "1,2,3,4", lambda: {"0": 1},
            lambda: [rng.choice(UNICODE)] * len(data), lambda: [long_string(rng)] * 2,
            lambda: [[1, 2], [3]], lambda: [],
        ])()
        inp["data"] = v
        return f"data={_short(v)}", None
    if kind == "name":
        v = rng.choice(["", "y", "X", long_string(rng, big=False), rng.choice(UNICODE)])
        if rng.random() < 0.3 and isinstance(doc.get("inputs"), list):
            small = len(json.dumps(doc, ensure_ascii=False)) < 4096
            n = rng.choice([2, 300] if small else [2])
            doc["inputs"] = [copy.deepcopy(x) for x in doc["inputs"] for _ in range(n)]
            return "inputs repeated", None
        inp["name"] = v
        return f"input name={_short(v)}", None
    if kind == "outputs":
        v = rng.choice([
            [{"name": "nope"}], [{"name": "y"}] * 1000, [{"name": "y", "parameters": {
                "binary_data": "yes"}}], [{"name": "y", "parameters": {"class_count": 3}}],
            [{"name": long_string(rng, big=False)}], [{}], "y", [None], {"name": "y"},
            [{"name": "y", "parameters": {"shared_memory_region": "r",
                                          "shared_memory_byte_size": 2**64}}],
        ])
        doc["outputs"] = v
        return f"outputs={_short(v)}", None
    if kind == "params":
        target = doc if rng.random() < 0.6 else inp
        k = rng.choice(["timeout", "binary_data_output", "op", "start", "end", "sequence_id",
                        "priority", "tokenize.max_length", "post.x", long_string(rng, False)])
        v = hostile_scalar(rng) if rng.random() < 0.7 else rng.choice(
            ["route", "copy", "slice", "reshape", "raw", "nope", -1, 2**63, 0])
        target.setdefault("parameters", {})
        if isinstance(target["parameters"], dict):
            target["parameters"][k] = v
        else:
            target["parameters"] = {k: v}
        return f"parameters.{_short(k)}={_short(v)}", None
    if kind == "top":
        v = rng.choice(["no-inputs", "inputs-obj", "id", "extra", "empty-inputs"])
        if v == "no-inputs":
            doc.pop("inputs", None)
        elif v == "inputs-obj":
            doc["inputs"] = {"x": doc.get("inputs")}
        elif v == "id":
            doc["id"] = hostile_scalar(rng)
        elif v == "extra":
            doc[rng.choice(["zzz", "model_name", "inputs ", long_string(rng, False)])] = [1]
        else:
            doc["inputs"] = []
        return f"top:{v}", None
    if kind == "url":
        name = rng.choice([hostile_str(rng), "%00", "%ff%fe", "a%2fb", "..%2f..%2fetc",
                           model + "%20", urllib.parse.quote("😀" * 10)])
        ver = rng.choice([None, None] + VERSIONS)
        path = f"/v2/models/{_quote(name, '%')}"
        if ver is not None:
            path += f"/versions/{_quote(ver, '')}"
        return f"url name={_short(name)} version={_short(ver)}", path + "/infer"
    v = long_string(rng)
    slot = rng.choice(["name", "datatype", "id", "param", "data"])
    if slot == "name":
        inp["name"] = v
    elif slot == "datatype":
        inp["datatype"] = v
    elif slot == "id":
        doc["id"] = v
    elif slot == "param":
        doc["parameters"] = {"k": v}
    else:
        inp["data"] = [v] * 2
    return f"huge {slot} ({len(v)} chars)", None


def _quote(v: str, safe: str) -> str:
    return urllib.parse.quote(v.encode("utf-8", "surrogatepass"), safe)


def json_text_mutation(rng: random.Random, text: bytes) -> tuple[bytes, str]:
    kind = rng.choice(["dupkeys", "number", "deep", "truncate", "utf8", "bom", "trailing",
                       "whitespace", "comment", "quotes", "escape", "notobject"])
    if kind == "dupkeys":
        return b'{"inputs": [], ' + text[1:], "duplicate key inputs"
    if kind == "number":
        tok = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"01", b"1.e5",
                          b".5", b"+1", b"0x10", b"1" * 400, b"-0", b"1e-400"])
        new, n = re.subn(rb"(?<=[\[,])\s*-?\d+(\.\d+)?", b" " + tok, text, count=1)
        return (new if n else text), f"number {tok[:20]!r}"
    if kind == "deep":
        depth = rng.choice([64, 129, 1000, 100000])
        nest = b"[" * depth + b"1" + b"]" * depth
        new, n = re.subn(rb'"data": \[', b'"data": [' + nest + b", ", text, count=1)
        return (new if n else b'{"x": ' + nest + b"}"), f"nesting depth {depth}"
    if kind == "truncate":
        return text[:rng.randrange(len(text))], "truncated JSON"
    if kind == "utf8":
        bad = rng.choice([b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80"])
        k = text.find(b'"', 2) + 1 or 1
        return text[:k] + bad + text[k:], f"invalid UTF-8 {bad!r}"
    if kind == "bom":
        return b"\xef\xbb\xbf" + text, "UTF-8 BOM"
    if kind == "trailing":
        return text + rng.choice([b"}", b"garbage", b"\x00", b"{}", b"]"]), "trailing bytes"
    if kind == "whitespace":
        return b" " * rng.choice([1000, 1 << 20]) + text, "leading whitespace"
    if kind == "comment":
        return b"/* c */" + text, "comment"
    if kind == "quotes":
        return text.replace(b'"', b"'"), "single quotes"
    if kind == "escape":
        esc = rng.choice([rb"\u0000", rb"\ud800", rb"\udc00\ud800", rb"\x41", rb"\q", rb"\u00"])
        new = text.replace(b'"x"', b'"x' + esc + b'"', 1).replace(b'"text"', b'"te' + esc + b'"', 1)
        return new, f"escape {esc.decode()}"
    return rng.choice([b"[]", b"5", b'"s"', b"null", b"", b"{"]), "not an object"


def _short(v, n: int = 40) -> str:
    if isinstance(v, (str, bytes, list)) and len(v) > n:  # no repr of megabytes
        return repr(v[:n])[:n] + f"…(len {len(v)})"
    s = repr(v)
    return s if len(s) <= n else s[:n] + f"…({len(s)})"


def build_http_json(ctx: Ctx, rng: random.Random) -> Case:
    model, doc = copy.deepcopy(rng.choice(json_bases(ctx)))
    path = f"/v2/models/{model}/infer"
    labels = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        label, new_path = json_mutation(rng, doc, model)
        labels.append(label)
        path = new_path or path
    text = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    if rng.random() < 0.3:
        text, label = json_text_mutation(rng, text)
        labels.append(label)
    if len(text) > (24 << 20):  # bounded: the case stays cheap to build and send
        text = text[:24 << 20]
        labels.append("capped at 24 MiB")
    headers = [("Content-Type", "application/json")]
    auth = True
    extra = rng.random()
    if extra < 0.05:
        auth = False
        labels.append("no auth")
    elif extra < 0.1:
        headers.append(("Authorization", rng.choice([
            "Bearer " + "k" * 17000, "Basic YTpi", "Bearer", "Bearer cdk_" + "0" * 64,
            "Bearer " + ctx.key + " x"])))
        auth = False
        labels.append("bad auth")
    elif extra < 0.13:
        headers = [("Content-Type", rng.choice(["text/plain", "application/octet-stream", "",
                                                "application/json; charset=utf-16"]))]
        labels.append("content-type")
    raw = http_request(ctx, "POST", path, text, headers, auth=auth)
    too_big = len(text) > (8 << 20)
    return Case(f"{model}: " + "; ".join(labels),
                lambda c: c.conn.exchange(raw, c.timeout), expect_answer=not too_big)


# ============================================================ category: http-binary


def build_http_binary(ctx: Ctx, rng: random.Random) -> Case:
    choices = [("add", "x", "FP32", [1, 4], struct.pack("<4f", 1, 2, 3, 4))]
    choices.append(("ident", "ids", "INT64", [2, 3], b"".join(
        i.to_bytes(8, "little", signed=True) for i in range(6))))
    if ctx.has("paraphrase"):
        strs = [b"a cat sits", b"a cat is sitting"]
        choices.append(("paraphrase", "text", "BYTES", [2, 1],
                        b"".join(len(s).to_bytes(4, "little") + s for s in strs)))
    model, name, dtype, shape, tail = rng.choice(choices)
    size: object = len(tail)
    doc = {"inputs": [{"name": name, "shape": shape, "datatype": dtype,
                       "parameters": {"binary_data_size": size}}],
           "outputs": [], "parameters": {"binary_data_output": True}}
    label = "valid"
    hdr_len: object = None  # None: the true length
    kind = rng.choice(["ihcl", "ihcl", "size", "tail", "bytes-prefix", "mixed", "outputs",
                       "no-ihcl", "many"])
    if kind == "ihcl":
        hdr_len = rng.choice(["+1", "-1", "0", "-5", "abc", str(2**64), str(2**63), "1e3",
                              " 10", "+10", "len+1000", "0x10", "", "99999999999999999999"])
        label = f"Inference-Header-Content-Length {hdr_len}"
    elif kind == "size":
        size = rng.choice([len(tail) - 1, len(tail) + 1, 0, -1, 2**64, 2**63, 2**32 + len(tail),
                           str(len(tail)), 1.5, None, [len(tail)]])
        doc["inputs"][0]["parameters"]["binary_data_size"] = size
        label = f"binary_data_size={_short(size)}"
    elif kind == "tail":
        how = rng.choice(["truncate", "extend", "empty", "double"])
        tail = {"truncate": tail[:rng.randrange(max(1, len(tail)))], "extend": tail + b"\0" * 7,
                "empty": b"", "double": tail + tail}[how]
        label = f"tensor bytes {how}"
    elif kind == "bytes-prefix" and dtype == "BYTES":
        lie = rng.choice([2**32 - 1, 2**31, 1000, 0])
        tail = lie.to_bytes(4, "little") + tail[4:]
        label = f"BYTES element length {lie}"
    elif kind == "mixed":
        doc["inputs"][0]["data"] = [1] * 4
        label = "data and binary_data_size both"
    elif kind == "outputs":
        doc["outputs"] = rng.choice([[{"name": "y", "parameters": {"binary_data": "yes"}}],
                                     [{"name": "y", "parameters": {"binary_data": 2**64}}],
                                     [{"name": "zz", "parameters": {"binary_data": True}}]])
        label = f"outputs {_short(doc['outputs'])}"
    elif kind == "many":
        doc["inputs"] = [copy.deepcopy(doc["inputs"][0]) for _ in range(rng.choice([2, 100]))]
        label = f"{len(doc['inputs'])} binary inputs"
    header = json.dumps(doc).encode()
    n = len(header)
    headers = [("Content-Type", "application/octet-stream")]
    if kind != "no-ihcl":
        v = hdr_len if hdr_len is not None else str(n)
        v = {"+1": str(n + 1), "-1": str(n - 1), "len+1000": str(n + 1000)}.get(v, v)
        headers.append(("Inference-Header-Content-Length", v))
        if rng.random() < 0.1:
            headers.append(("Inference-Header-Content-Length", str(n + 3)))
            label += "; twice"
    else:
        label = "binary without Inference-Header-Content-Length"
    if rng.random() < 0.15:
        headers.append(("Accept-Encoding", rng.choice(["gzip", "deflate", "br", "gzip;q=0, *"])))
        label += "; accept-encoding"
    raw = http_request(ctx, "POST", f"/v2/models/{model}/infer", header + tail, headers)
    return Case(f"{model}: {label}", lambda c: c.conn.exchange(raw, c.timeout), expect_answer=True)


# ============================================================ category: http-raw


def _zeros_gzip(ctx: Ctx, mib: int, kind: str) -> bytes:
    key = ("bomb", mib, kind)
    if key not in ctx.cache:
        z = zlib.compressobj(9, zlib.DEFLATED, {"gzip": 31, "deflate": 15, "raw": -15}[kind])
        block = bytes(1 << 20)
        out = b"".join(z.compress(block) for _ in range(mib)) + z.flush()
        ctx.cache[key] = out
    return ctx.cache[key]


def build_http_raw(ctx: Ctx, rng: random.Random, index: int) -> Case:
    host = f"{ctx.http[0]}:{ctx.http[1]}"
    auth = f"Authorization: Bearer {ctx.key}\r\n"
    good = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                   "data": [1, 2, 3, 4]}]}).encode()
    post = f"POST /v2/models/add/infer HTTP/1.1\r\nHost: {host}\r\n{auth}"
    kind = pick(rng, index, ["line", "headers", "length", "chunked", "encoding", "slow",
                             "slowmany", "h2", "pipeline", "bigbody", "line", "headers",
                             "length", "chunked", "encoding"] + ["line", "headers", "length",
                                                                 "chunked"] * 2)
    complete, expect = True, False
    if kind == "line":
        line = rng.choice([
            lambda: rng.randbytes(rng.randint(1, 200)) + b"\r\n\r\n",
            lambda: b"GET\r\n\r\n", lambda: b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
            lambda: b"GET /" + b"a" * rng.choice([8192, 65536, 1 << 20]) + b" HTTP/1.1\r\n\r\n",
            lambda: b"GET /v2/health/live\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
            lambda: b"X" * 10000 + b" / HTTP/1.1\r\n\r\n",
            lambda: b"GET /v2/health/live HTTP/1.0\r\n\r\n",
            lambda: b"GET http://evil/v2/health/live HTTP/1.1\r\nHost: a\r\n\r\n",
            lambda: b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n",
            lambda: b"GET /v2/health/live HTTP/1.1\n\n", lambda: b"\r\n\r\n\r\n",
            lambda: b"\r\n\r\nGET /v2/health/live HTTP/1.1\r\nHost: a\r\n\r\n",
            lambda: b"GET /v2/../../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n",
            lambda: b"get /v2/health/live http/1.1\r\nHost: a\r\n\r\n",
            lambda: b"GET /v2/health/live HTTP/1.1\r\nHost: a\r\n\r\n" * 100,
        ])()
        parts, label = [line], f"request line {_short(line[:60])}"
        complete = line.strip(b"\r\n") != b""  # blank lines only: still waiting for one
    elif kind == "headers":
        v = rng.choice(["one64k", "one1m", "many", "nocolon", "space", "fold", "ctl", "nul",
                        "hostdup", "utf8"])
        hdr = {
            "one64k": lambda: b"X-Big: " + b"a" * 65536 + b"\r\n",
            "one1m": lambda: b"X-Big: " + b"a" * (1 << 20) + b"\r\n",
            "many": lambda: b"".join(b"X-%d: v\r\n" % k for k in range(10000)),
            "nocolon": lambda: b"NoColonHere\r\n", "space": lambda: b"Bad Name: v\r\n",
            "fold": lambda: b"X-A: a\r\n  folded\r\n", "ctl": lambda: b"X-A: a\x7fb\x01\r\n",
            "nul": lambda: b"X-A: a\x00b\r\n", "hostdup": lambda: b"Host: other\r\n",
            "utf8": lambda: "X-Ü: 😀\r\n".encode(),
        }[v]()
        body = good
        parts = [post.encode() + hdr
                 + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                 + body]
        label = f"header {v}"
    elif kind == "length":
        v = rng.choice(["neg", "nan", "list", "two", "huge", "long", "short", "plus", "space"])
        cl = {"neg": "-1", "nan": "abc", "list": "1, 2", "huge": str(2**64),
              "long": str(len(good) + 100), "short": str(len(good) - 10), "plus": "+%d" % len(good),
              "space": " %d " % len(good), "two": None}[v]
        if v == "two":
            hdr = "Content-Length: %d\r\nContent-Length: %d\r\n" % (len(good), len(good) + 1)
        else:
            hdr = f"Content-Length: {cl}\r\n"
        parts = [(post + "Content-Type: application/json\r\n" + hdr + "\r\n").encode() + good]
        complete = v != "long"  # the server waits for the rest: expected
        label = f"Content-Length {v}"
    elif kind == "chunked":
        v = rng.choice(["badhex", "overflow", "neg", "nofinal", "longer", "ext", "trailers",
                        "both", "tegzip", "teunknown", "ok"])
        body = good
        chunk = b"%x\r\n" % len(body) + body + b"\r\n"
        enc = {
            "badhex": b"zz\r\n" + body + b"\r\n0\r\n\r\n",
            "overflow": b"ffffffffffffffffffff\r\n" + body + b"\r\n0\r\n\r\n",
            "neg": b"-1\r\n" + body + b"\r\n0\r\n\r\n",
            "nofinal": chunk,
            "longer": b"%x\r\n" % (len(body) - 5) + body + b"\r\n0\r\n\r\n",
            "ext": b"%x;" % len(body) + b"e" * 70000 + b"\r\n" + body + b"\r\n0\r\n\r\n",
            "trailers": chunk + b"0\r\n" + b"X-T: " + b"t" * 70000 + b"\r\n\r\n",
            "ok": chunk + b"0\r\n\r\n",
        }.get(v, chunk + b"0\r\n\r\n")
        te = {"tegzip": "gzip, chunked", "teunknown": "chunkedx"}.get(v, "chunked")
        extra = "Content-Length: 5\r\n" if v == "both" else ""
        parts = [(post + f"Content-Type: application/json\r\nTransfer-Encoding: {te}\r\n{extra}\r\n"
                  ).encode() + enc]
        complete = v != "nofinal"
        label = f"chunked {v}"
    elif kind == "encoding":
        v = rng.choice(["badgzip", "truncgzip", "bomb1", "bomb16", "bomb80", "nested", "rawdeflate",
                        "br", "double", "unknown", "zlib"])
        body, ce = {
            "badgzip": (b"\x1f\x8b" + rng.randbytes(40), "gzip"),
            "truncgzip": (gzip.compress(good)[:-9], "gzip"),
            "bomb1": (lambda: _zeros_gzip(ctx, 1, "gzip"), "gzip"),
            "bomb16": (lambda: _zeros_gzip(ctx, 16, "gzip"), "gzip"),
            "bomb80": (lambda: _zeros_gzip(ctx, 80, "gzip"), "gzip"),
            "nested": (lambda: gzip.compress(_zeros_gzip(ctx, 80, "gzip")), "gzip"),
            "rawdeflate": (lambda: _zeros_gzip(ctx, 80, "raw"), "deflate"),
            "zlib": (lambda: _zeros_gzip(ctx, 16, "deflate"), "deflate"),
            "br": (good, "br"), "double": (gzip.compress(gzip.compress(good)), "gzip, gzip"),
            "unknown": (good, "x-nope"),
        }[v]
        body = body() if callable(body) else body
        parts = [(post + f"Content-Type: application/json\r\nContent-Encoding: {ce}\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n").encode() + body]
        label, expect = f"Content-Encoding {v}", True
    elif kind == "slow":
        cut = rng.choice([5, 20, 60])
        req = (post + "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % len(good)).encode() + good
        parts, complete = [req[:cut]], False
        label = f"partial request ({cut} bytes), cap {ctx.slow_cap:g} s"
    elif kind == "slowmany":
        n = rng.choice([16, 64])
        return Case(f"{n} partial connections, then /v2/health/live",
                    lambda c: _slow_many(c, n))
    elif kind == "h2":
        parts = [H2_PREFACE + h2_frame(SETTINGS, 0, 0)]
        label = "HTTP/2 prior knowledge on the HTTP port"
        if rng.random() < 0.5:
            parts = [f"GET /v2/health/live HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade, "
                     "HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA"
                     "\r\n\r\n".encode()]
            label = "Upgrade: h2c"
    elif kind == "pipeline":
        one = (post + "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % len(good)).encode() + good
        parts = [one * rng.choice([2, 50]) + rng.choice([b"", b"GARBAGE\r\n\r\n"])]
        label = "pipelined requests"
    else:  # one byte past --max-request-bytes (64 MiB)
        n = (64 << 20) + 1
        head = post + "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % n
        parts = [head.encode() + b"{" + b" " * (n - 1)]
        label = "body of 64 MiB + 1"
    timeout_for = ctx.slow_cap if not complete else None
    return Case(label, lambda c: Http1(c.http).exchange(
        parts, timeout_for or c.timeout, complete, keep=False), complete, expect)


def _slow_many(ctx: Ctx, n: int) -> Outcome:
    """`n` connections holding half a request; a fresh request must still be answered."""
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(ctx.http, timeout=ctx.timeout)
            s.sendall(b"POST /v2/models/add/infer HTTP/1.1\r\nHost: a\r\nContent-Le")
            socks.append(s)
        conn = Http1(ctx.http)
        return conn.exchange(http_request(ctx, "GET", "/v2/health/live", auth=False),
                             ctx.timeout, keep=False)
    finally:
        for s in socks:
            s.close()


# ============================================================ category: grpc-proto


def infer_bases(ctx: Ctx) -> list[bytes]:
    if "infer_bases" in ctx.cache:
        return ctx.cache["infer_bases"]
    out = []
    r = kpb.ModelInferRequest(model_name="add")
    r.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    r.raw_input_contents.append(bytes(16))
    out.append(r.SerializeToString())
    r = kpb.ModelInferRequest(model_name="add", model_version="1.0.0", id="req-1")
    t = r.inputs.add(name="x", datatype="FP32", shape=[2, 4])
    t.contents.fp32_contents.extend(range(8))
    r.outputs.add(name="y")
    out.append(r.SerializeToString())
    r = kpb.ModelInferRequest(model_name="ident")
    t = r.inputs.add(name="ids", datatype="INT64", shape=[1, 3])
    t.contents.int64_contents.extend([1, 2, 3])
    out.append(r.SerializeToString())
    r = kpb.ModelInferRequest(model_name="ops")
    t = r.inputs.add(name="x", datatype="FP32", shape=[3])
    t.contents.fp32_contents.extend([1, 2, 3])
    r.parameters["op"].string_param = "copy"
    out.append(r.SerializeToString())
    if ctx.has("paraphrase"):
        r = kpb.ModelInferRequest(model_name="paraphrase")
        t = r.inputs.add(name="text", datatype="BYTES", shape=[2, 1])
        t.contents.bytes_contents.extend([b"a cat sits", b"a cat is sitting"])
        out.append(r.SerializeToString())
    ctx.cache["infer_bases"] = out
    return out


def structured_infer(rng: random.Random) -> tuple[bytes, str]:
    """A ModelInferRequest with out-of-range or mismatched fields, encoded by hand."""
    model = rng.choice(["add", "ident", "ops", "add", "a" * 17000, "", "nope", "\u202eadd"])
    dtype = rng.choice(["FP32", "INT64", "BYTES", "FP16", "BF16", "BOOL", "", "X" * 300, "fp32"])
    shape = rng.choice([[1, 4], [2**62, 2**62], [-1, 4], [-(2**63)], [0], [1] * 17, [2**63 - 1],
                        [1, 4] * 600, []])
    raw_len = rng.choice([16, 0, 15, 17, 1 << 20, 8])
    tensor = pb(1, "x") + pb(2, dtype) + b"".join(pv(3, d) for d in shape)
    how = rng.choice(["raw", "contents", "both", "paramtypes", "many", "groups", "version",
                      "outputs", "packed"])
    msg = pb(1, model)
    label = f"model {_short(model, 20)} {dtype[:10]} shape {_short(shape, 30)}"
    if how == "raw":
        msg += pb(5, tensor) + pb(7, bytes(raw_len))
        label += f" raw {raw_len} B"
    elif how == "contents":
        contents = rng.choice([pb(1, b"\x01"), pb(4, b"\x00" * 40), pb(8, b"\x00" * 3),
                               pb(6, b"\x01\x02"), pb(7, bytes(16)), pb(3, varint(2**63) * 4)])
        msg += pb(5, tensor + pb(5, contents))
        label += " typed contents"
    elif how == "both":
        msg += pb(5, tensor + pb(5, pb(6, bytes(16)))) + pb(7, bytes(16))
        label += " typed and raw"
    elif how == "paramtypes":
        p = rng.choice([pv(1, 2), pv(2, 2**64 - 1), pb(3, "a" * 17000), b"\x21" + bytes(8),
                        pv(5, 2**64 - 1), pb(99, b"x")])
        msg += pb(4, pb(1, rng.choice(["timeout", "op", "binary_data_output", ""])) + pb(2, p))
        msg += pb(5, pb(1, "x") + pb(2, "FP32") + pv(3, 1) + pv(3, 4)) + pb(7, bytes(16))
        label = f"parameter of odd type {_short(p, 20)}"
    elif how == "many":
        n = rng.choice([300, 5000])
        msg += pb(5, tensor) * n + pb(7, bytes(16)) * n
        label += f" {n} inputs"
    elif how == "groups":
        depth = rng.choice([100, 10000])
        msg += varint(99 << 3 | 3) * depth + varint(99 << 3 | 4) * depth
        label = f"nested groups depth {depth}"
    elif how == "version":
        msg += pb(2, rng.choice(VERSIONS + ["a" * 17000])) + pb(5, tensor) + pb(7, bytes(16))
        label += " odd version"
    elif how == "outputs":
        msg += pb(5, tensor) + pb(7, bytes(16)) + pb(6, pb(1, rng.choice(["", "zz", "y" * 17000]))
                                                   + pb(3, pb(1, "class_count") + pb(2, pv(2, 5))))
        label += " odd outputs"
    else:  # packed shape with a varint that never ends
        never_ends = b"\x81" + b"\x80" * 9 + b"\x01"
        msg += pb(5, pb(1, "x") + pb(2, "FP32") + pb(3, never_ends))
        label = "packed shape, 11-byte varint"
    return msg, label


def grpc_call(ctx: Ctx, path: str, payload: bytes, compression=None,
              metadata=None, kind: str = "unary") -> Outcome:
    start = time.monotonic()
    md = ctx.md if metadata is None else metadata
    try:
        if kind == "unary":
            ctx.channel.unary_unary(path)(payload, metadata=md, timeout=ctx.timeout,
                                          compression=compression)
        elif kind == "client-stream":
            ctx.channel.stream_unary(path)(iter(payload), metadata=md, timeout=ctx.timeout)
        else:
            total = 0
            for chunk in ctx.channel.unary_stream(path)(payload, metadata=md, timeout=ctx.timeout):
                total += len(chunk)
                if total > (64 << 20):
                    break
        return Outcome("OK")
    except grpc.RpcError as e:
        return _rpc_error_outcome(e, time.monotonic() - start, ctx.timeout)


def _rpc_error_outcome(e: grpc.RpcError, elapsed: float, timeout: float) -> Outcome:
    code = e.code().name if e.code() else "UNKNOWN"
    details = e.details() or ""
    if code == "DEADLINE_EXCEEDED" and elapsed >= timeout * 0.95:
        return Outcome("timeout")
    if code == "UNAVAILABLE" and re.search(r"Socket closed|Connection reset|failed to connect|"
                                           r"Broken pipe|GOAWAY", details, re.I):
        return Outcome("closed", details)
    m = re.search(r"Received RST_STREAM with error code (\d+)", details)
    if m:  # grpcio calls a reset stream INTERNAL: it is the HTTP/2 layer's answer
        return Outcome("rst:" + _h2_error(int(m.group(1))), details)
    m = re.search(r"Received http2 header with status: (\d+)", details)
    if m:  # grpcio's UNKNOWN for an HTTP error status (431: headers too large)
        return Outcome(f"http:{m.group(1)}", details)
    m = re.search(r"metadata size exceeds (?:hard|soft) limit \((\d+) vs", details)
    if m:  # the client refused a header block this large: the server echoed too much
        return Outcome(code, details, int(m.group(1)))
    return _msg_outcome(code, details)


def build_grpc_proto(ctx: Ctx, rng: random.Random, index: int) -> Case:
    kind = pick(rng, index, ["mutate", "structured", "garbage", "other", "session", "compress"]
                + ["mutate"] * 9 + ["structured"] * 6 + ["garbage", "other", "session"] * 3)
    if kind == "mutate":
        base = rng.choice(infer_bases(ctx))
        data, op = bit_flip(rng, base)
        for _ in range(rng.choice([0, 0, 1, 3])):
            data, op2 = bit_flip(rng, data)
            op += "+" + op2
        return Case(f"ModelInfer mutated ({op})", lambda c: grpc_call(c, INFER, data))
    if kind == "structured":
        data, label = structured_infer(rng)
        return Case(f"ModelInfer {label}", lambda c: grpc_call(c, INFER, data))
    if kind == "garbage":
        service = rng.choice(["inference.GRPCInferenceService"] * 3
                             + ["conduit.session.v1.Session"])
        method = rng.choice(KSERVE_METHODS if service.startswith("inference") else SESSION_METHODS)
        data = rng.randbytes(rng.choice([1, 5, 64, 2048]))
        return Case(f"{method} random bytes ({len(data)})",
                    lambda c: grpc_call(c, f"/{service}/{method}", data))
    if kind == "other":
        method = rng.choice(["ModelMetadata", "ModelReady", "ModelConfig", "ModelStatistics",
                             "RepositoryIndex", "RepositoryModelLoad"])
        name = rng.choice(["add", hostile_str(rng)])
        if method == "RepositoryModelLoad":
            msg = pb(2, name) + rng.choice([b"", pb(3, pb(1, "config") + pb(2, pb(3, "{}")))])
        elif method == "RepositoryIndex":
            msg = pb(1, name) + pv(2, rng.choice([0, 1, 2**64 - 1]))
        else:
            msg = pb(1, name) + pb(2, rng.choice(VERSIONS))
        data, op = bit_flip(rng, msg) if rng.random() < 0.4 else (msg, "as is")
        return Case(f"{method} name {_short(name, 30)} ({op})",
                    lambda c: grpc_call(c, f"/inference.GRPCInferenceService/{method}", data))
    if kind == "session":
        return _session_case(ctx, rng)
    # compression: a valid message, or a bomb, gzip-compressed by grpcio
    size = rng.choice([0, 0, 0, 1, 60, 65])
    data = rng.choice(infer_bases(ctx)) if size == 0 else bytes(size << 20)
    label = "gzip-compressed valid request" if size == 0 else f"gzip bomb {size} MiB of zeros"
    return Case(label, lambda c: grpc_call(c, INFER, data, compression=grpc.Compression.Gzip))


def _session_case(ctx: Ctx, rng: random.Random) -> Case:
    s = "conduit.session.v1.Session"
    how = rng.choice(["open", "open", "run", "run", "other"])
    if how == "open":
        mods = rng.choice([["add@1.0.0"], [hostile_str(rng)], ["add@1.0.0"] * 1000, [],
                           ["add", "add"]])
        lease = rng.choice([0, 1, 60000, 2**63, 2**64 - 1])
        sid = rng.choice(["", hostile_str(rng)])
        msg = b"".join(pb(1, m) for m in mods) + pv(2, lease) + pb(3, sid)

        def run(c: Ctx) -> Outcome:
            start = time.monotonic()
            try:
                res = c.channel.unary_unary(f"/{s}/Open")(msg, metadata=c.md, timeout=c.timeout)
            except grpc.RpcError as e:
                return _rpc_error_outcome(e, time.monotonic() - start, c.timeout)
            # Close what opened: open sessions are bounded per tenant.
            sid = next((v for n, _, v in pb_fields(res) if n == 1), b"")
            grpc_call(c, f"/{s}/Close", pb(1, sid))
            return Outcome("OK")
        return Case(f"Open modules {_short(mods, 30)} lease {lease}", run)
    if how == "run":
        tensor = rng.choice([
            pb(1, "FP32") + pv(2, 1) + pv(2, 4) + pb(3, bytes(rng.choice([0, 15, 17, 16]))),
            pb(1, "FP32") + pv(2, 2**62) + pv(2, 2**62) + pb(3, bytes(16)),
            pb(1, "nope") + pv(2, 1) + pv(2, 4) + pb(3, bytes(16)),
            pb(1, "BYTES") + pv(2, 1) + pv(2, 4) + pb(3, b"\xff\xff\xff\xff" + bytes(12)),
            pb(1, "FP32") + b"".join(pv(2, 1) for _ in range(40)) + pb(3, bytes(4)),
        ])
        source = rng.choice([pb(2, tensor), pv(3, rng.choice([0, 1, 2**64 - 1]))])
        params = pb(5, pb(1, rng.choice(["op", "timeout", ""])) + pb(2, rng.choice(
            [pv(2, 2**64 - 1), pb(3, "a" * 17000), pv(5, 0)])))
        body = (pb(2, rng.choice(["add@1.0.0", "add", hostile_str(rng)]))
                + pb(3, pb(1, "x") + source)
                + pb(4, rng.choice(["y", "zz", ""])) + (params if rng.random() < 0.3 else b"")
                + b"".join(pv(6, rng.choice([0, 2**64 - 1])) for _ in range(rng.choice([0, 3]))))

        def run(c: Ctx) -> Outcome:
            sid = _session(c)
            return grpc_call(c, f"/{s}/Run", pb(1, sid) + body)
        return Case("Run in an open session, odd tensor or params", run)
    method = rng.choice(["Heartbeat", "Fetch", "Release", "Close"])
    sid = rng.choice(["", hostile_str(rng), "00000000-0000-0000-0000-000000000000"])
    ids = b"".join(pv(2, rng.choice([0, 1, 2**64 - 1])) for _ in range(rng.choice([0, 1, 10000])))
    return Case(f"{method} session {_short(sid, 20)}", lambda c: grpc_call(
        c, f"/{s}/{method}", pb(1, sid) + (ids if method in ("Fetch", "Release") else b"")))


def _session(ctx: Ctx) -> str:
    if not ctx.session_id:
        try:
            res = ctx.channel.unary_unary("/conduit.session.v1.Session/Open")(
                pb(1, "add@1.0.0") + pv(2, 60000), metadata=ctx.md, timeout=ctx.timeout)
            ctx.session_id = next((v.decode() for n, _, v in pb_fields(res) if n == 1), "")
            ctx.cache["session_opened"] = time.monotonic()
        except grpc.RpcError:
            return "none"
    if time.monotonic() - ctx.cache.get("session_opened", 0) > 30:
        ctx.session_id = ""
        return _session(ctx)
    return ctx.session_id


# ============================================================ category: grpc-framing


def _grpc_head(ctx: Ctx, path: str = INFER, extra=(), content_type: str = "application/grpc",
               te: bool = True, auth: bool = True, method: str = "POST") -> list[tuple]:
    hs = [(":method", method), (":scheme", "http"), (":path", path),
          (":authority", f"{ctx.grpc_addr[0]}:{ctx.grpc_addr[1]}")]
    if content_type is not None:
        hs.append(("content-type", content_type))
    if te:
        hs.append(("te", "trailers"))
    if auth:
        hs.append(("authorization", f"Bearer {ctx.key}"))
    return hs + list(extra)


def _block(headers) -> bytes:
    return b"".join(hp_literal(k, v) for k, v in headers)


def h2_case(label: str, frames: Callable[[Ctx], bytes], stream: int = 1,
            complete: bool = True) -> Case:
    def run(c: Ctx) -> Outcome:
        conn = H2Conn(c.grpc_addr, c.timeout)
        try:
            conn.send(H2_PREFACE + h2_frame(SETTINGS, 0, 0) + frames(c))
            return conn.answer(stream, c.timeout if complete else c.slow_cap, complete)
        finally:
            conn.close()
    return Case(label, run, complete)


def _good_infer() -> bytes:
    r = kpb.ModelInferRequest(model_name="add")
    r.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    r.raw_input_contents.append(bytes(16))
    return r.SerializeToString()


def build_grpc_framing(ctx: Ctx, rng: random.Random, index: int) -> Case:
    good = _good_infer()
    hb = lambda c, **kw: h2_headers(1, _block(_grpc_head(c, **kw)), end_stream=False)  # noqa: E731
    kind = pick(rng, index, [
        "flag-no-encoding", "flag-bad", "gzip-garbage", "encoding-unknown", "prefix-past",
        "prefix-huge", "prefix-short", "two-messages", "no-message", "prefix-only",
        "gzip-bomb", "content-type", "method-get", "no-te", "unknown-path", "data-stream0",
        "even-stream", "window-zero", "window-overflow", "frame-too-big", "unknown-frame",
        "continuation-alone", "bad-hpack", "settings-bad", "ping-flood", "rapid-reset",
        "empty-data-flood", "priority-self", "headers-after-end", "rst-then-data",
        "padded-bad", "upper-header", "pseudo-after", "dup-path", "conn-header",
    ])
    if kind == "gzip-bomb" and index >= 40 and rng.random() < 0.8:
        kind = "prefix-past"  # the bomb is slow to build: once, then rarely
    L = f"{kind}"
    if kind == "flag-no-encoding":
        return h2_case(L, lambda c: hb(c) + h2_data(1, grpc_msg(good, flag=1)))
    if kind == "flag-bad":
        flag = rng.choice([2, 0x80, 0xFF])
        return h2_case(f"{L} {flag}", lambda c: hb(c) + h2_data(1, grpc_msg(good, flag=flag)))
    if kind == "gzip-garbage":
        payload = rng.choice([rng.randbytes(40), gzip.compress(good)[:-6], b"\x1f\x8b",
                              zlib.compress(good)])
        return h2_case(L, lambda c: hb(c, extra=[("grpc-encoding", "gzip")])
                       + h2_data(1, grpc_msg(payload, flag=1)))
    if kind == "encoding-unknown":
        enc = rng.choice(["br", "snappy", "zstd", "identity", "", "gzip, gzip", "x" * 5000])
        return h2_case(f"{L} {_short(enc, 20)}", lambda c: hb(c, extra=[("grpc-encoding", enc)])
                       + h2_data(1, grpc_msg(good, flag=1)))
    if kind == "prefix-past":
        extra = rng.choice([1, 10, 1000, 60000])
        return h2_case(f"{L} +{extra}", lambda c: hb(c)
                       + h2_data(1, grpc_msg(good, length=len(good) + extra)))
    if kind == "prefix-huge":
        n = rng.choice([0xFFFFFFFF, 0x80000000, (64 << 20) + 1, 0x7FFFFFFF])
        return h2_case(f"{L} {n}", lambda c: hb(c) + h2_data(1, grpc_msg(good, length=n)))
    if kind == "prefix-short":
        return h2_case(L, lambda c: hb(c) + h2_data(1, grpc_msg(good, length=len(good) - 3)))
    if kind == "two-messages":
        return h2_case(L, lambda c: hb(c) + h2_data(1, grpc_msg(good) * rng.choice([2, 100])))
    if kind == "no-message":
        return h2_case(L, lambda c: h2_headers(1, _block(_grpc_head(c)), end_stream=True))
    if kind == "prefix-only":
        k = rng.randint(1, 4)
        return h2_case(f"{L} {k} bytes", lambda c: hb(c) + h2_data(1, grpc_msg(good)[:k]))
    if kind == "gzip-bomb":
        bomb = _zeros_gzip(ctx, 60, "gzip")
        return h2_case(f"{L} 60 MiB of zeros ({len(bomb)} B)",
                       lambda c: hb(c, extra=[("grpc-encoding", "gzip")])
                       + h2_data(1, grpc_msg(bomb, flag=1)))
    if kind == "content-type":
        ct = rng.choice(["application/json", "", "application/grpc+json", "text/plain",
                         "application/grpc-web", None, "application/grpc; charset=x" * 100])
        return h2_case(f"{L} {_short(ct, 20)}", lambda c: hb(c, content_type=ct)
                       + h2_data(1, grpc_msg(good)))
    if kind == "method-get":
        return h2_case(L, lambda c: h2_headers(1, _block(_grpc_head(c, method=rng.choice(
            ["GET", "PUT", "OPTIONS", "X" * 100]))), end_stream=True))
    if kind == "no-te":
        return h2_case(L, lambda c: hb(c, te=False) + h2_data(1, grpc_msg(good)))
    if kind == "unknown-path":
        path = rng.choice(["/", "/inference.GRPCInferenceService/", "/x/y",
                           "/inference.GRPCInferenceService/" + "A" * 17000, "*", "",
                           "/conduit.registry.v1.Registry/Nope"])
        return h2_case(f"{L} {_short(path, 30)}", lambda c: h2_headers(
            1, _block(_grpc_head(c, path=path)), end_stream=False) + h2_data(1, grpc_msg(good)))
    if kind == "data-stream0":
        return h2_case(L, lambda c: h2_frame(DATA, 0, 0, b"xx") + hb(c)
                       + h2_data(1, grpc_msg(good)))
    if kind == "even-stream":
        return h2_case(L, lambda c: h2_headers(2, _block(_grpc_head(c)), end_stream=False)
                       + h2_data(2, grpc_msg(good)), stream=2)
    if kind == "window-zero":
        return h2_case(L, lambda c: h2_frame(WINDOW_UPDATE, 0, 0, bytes(4)) + hb(c)
                       + h2_data(1, grpc_msg(good)))
    if kind == "window-overflow":
        inc = (0x7FFFFFFF).to_bytes(4, "big")
        return h2_case(L, lambda c: h2_frame(WINDOW_UPDATE, 0, 0, inc) * 2 + hb(c)
                       + h2_data(1, grpc_msg(good)))
    if kind == "frame-too-big":
        return h2_case(L, lambda c: hb(c) + h2_data(1, grpc_msg(good + bytes(20000)),
                                                    max_frame=1 << 20))
    if kind == "unknown-frame":
        return h2_case(L, lambda c: h2_frame(0xFA, 0xFF, 1, rng.randbytes(100)) + hb(c)
                       + h2_data(1, grpc_msg(good)))
    if kind == "continuation-alone":
        return h2_case(L, lambda c: h2_frame(CONTINUATION, END_HEADERS, 1, _block(_grpc_head(c))))
    if kind == "bad-hpack":
        bad = rng.choice([b"\x80", b"\xff\xff\xff\xff\x0f", b"\x3f\xff\xff\xff\xff\x0f",
                          b"\x00\x85\xff\xff\xff\xff\xff\x01a", b"\x00\x7f\xff\xff\xff\x0f",
                          b"\xbe\xbe\xbe", rng.randbytes(30)])
        return h2_case(f"{L} {bad[:8]!r}", lambda c: h2_headers(
            1, _block(_grpc_head(c)) + bad, end_stream=False) + h2_data(1, grpc_msg(good)))
    if kind == "settings-bad":
        ident, val = rng.choice([(2, 2), (4, 2**31), (5, 1), (5, 2**24), (3, 0), (0x99, 1),
                                 (1, 2**32 - 1), (6, 0)])
        return h2_case(f"{L} {ident}={val}", lambda c: h2_frame(
            SETTINGS, 0, 0, ident.to_bytes(2, "big") + val.to_bytes(4, "big")) + hb(c)
            + h2_data(1, grpc_msg(good)))
    if kind == "ping-flood":
        n = rng.choice([100, 1000])
        return h2_case(f"{L} {n}", lambda c: h2_frame(PING, 0, 0, bytes(8)) * n + hb(c)
                       + h2_data(1, grpc_msg(good)))
    if kind == "rapid-reset":
        n = rng.choice([50, 200])

        def frames(c: Ctx) -> bytes:
            out = bytearray()
            for k in range(n):
                sid = 1 + 2 * k
                out += h2_headers(sid, _block(_grpc_head(c)), end_stream=False)
                out += h2_frame(RST_STREAM, 0, sid, (8).to_bytes(4, "big"))
            last = 1 + 2 * n
            return bytes(out + h2_headers(last, _block(_grpc_head(c)), end_stream=False)
                         + h2_data(last, grpc_msg(good)))
        return h2_case(f"{L} {n} streams", frames, stream=1 + 2 * n)
    if kind == "empty-data-flood":
        n = rng.choice([1000, 10000])
        return h2_case(f"{L} {n}", lambda c: hb(c) + h2_frame(DATA, 0, 1) * n
                       + h2_data(1, grpc_msg(good)))
    if kind == "priority-self":
        return h2_case(L, lambda c: h2_frame(PRIORITY, 0, 1, (1).to_bytes(4, "big") + b"\x10")
                       + hb(c) + h2_data(1, grpc_msg(good)))
    if kind == "headers-after-end":
        return h2_case(L, lambda c: hb(c) + h2_data(1, grpc_msg(good))
                       + h2_headers(1, _block([("x", "y")]), end_stream=True))
    if kind == "rst-then-data":
        return h2_case(L, lambda c: hb(c) + h2_frame(RST_STREAM, 0, 1, bytes(4))
                       + h2_data(1, grpc_msg(good)) + h2_headers(3, _block(_grpc_head(c)), False)
                       + h2_data(3, grpc_msg(good)), stream=3)
    if kind == "padded-bad":
        return h2_case(L, lambda c: hb(c) + h2_frame(DATA, PADDED | END_STREAM, 1,
                                                     b"\xff" + grpc_msg(good)))
    if kind == "upper-header":
        return h2_case(L, lambda c: hb(c, extra=[("X-Upper", "v")]) + h2_data(1, grpc_msg(good)))
    if kind == "pseudo-after":
        return h2_case(L, lambda c: h2_headers(1, _block(_grpc_head(c) + [(":path", INFER)]),
                                               end_stream=False) + h2_data(1, grpc_msg(good)))
    if kind == "dup-path":
        return h2_case(L, lambda c: h2_headers(1, _block([(":path", "/x")] + _grpc_head(c)),
                                               end_stream=False) + h2_data(1, grpc_msg(good)))
    return h2_case(L, lambda c: hb(c, extra=[("connection", "keep-alive")])
                   + h2_data(1, grpc_msg(good)))


# ============================================================ category: grpc-metadata

TIMEOUTS = ["1152921504606846976H", "2305843009213693952H", "4611686018427387904M",
            "999999999999H", "99999999H", "99999999S", "99999999M", "99999999m", "99999999u",
            "99999999n", "0n", "0S", "1n", "", "abc", "-1S", "1", "1X", "1.5S", "+1S", " 1S",
            "１S", "1S1S", "18446744073709551615S", "9" * 1000 + "S", "00000000000000000001S",
            "100000000H", "2562047H", "2562048H", "153722867M", "9223372036S", "9223372037S"]


def build_grpc_metadata(ctx: Ctx, rng: random.Random, index: int) -> Case:
    good = _good_infer()
    kind = "timeout" if index < len(TIMEOUTS) else rng.choice(
        ["timeout", "timeout", "timeout", "auth", "big", "many", "bin", "odd",
         "registry-timeout"])
    path, body = INFER, grpc_msg(good)
    auth, extra = True, []
    if kind in ("timeout", "registry-timeout"):
        v = TIMEOUTS[index] if index < len(TIMEOUTS) else rng.choice(TIMEOUTS)
        extra = [("grpc-timeout", v)]
        label = f"grpc-timeout {_short(v, 24)}"
        if kind == "registry-timeout":
            path = "/conduit.registry.v1.Registry/" + rng.choice(["Resolve", "Whoami", "List"])
            body = grpc_msg(pb(1, "add@1.0.0") if path.endswith("Resolve") else b"")
            label += " on " + path.rsplit("/", 1)[1]
    elif kind == "auth":
        auth = False
        v = rng.choice(["", "Bearer", "Bearer " + "k" * 17000, "Basic YTpi", f"bearer {ctx.key}",
                        f"Bearer {ctx.key} ", f"Bearer\t{ctx.key}", "Bearer cdk_" + "0" * 64,
                        "Bearer " + "é" * 40, f"Bearer {ctx.key}\x00", None, "twice"])
        if v is None:
            extra = []
        elif v == "twice":
            extra = [("authorization", f"Bearer {ctx.key}"), ("authorization", "Bearer x")]
        else:
            extra = [("authorization", v)]
        label = f"authorization {_short(v, 24)}"
    elif kind == "big":
        n = rng.choice([8 << 10, 15 << 10, 16 << 10, 17000, 64 << 10, 1 << 20])
        extra = [(rng.choice(["x-big", "user-agent", "grpc-accept-encoding"]), "v" * n)]
        label = f"one {n}-byte header"
    elif kind == "many":
        n = rng.choice([100, 1000, 10000])
        extra = [(f"x-{k}", "") for k in range(n)]
        label = f"{n} headers"
    elif kind == "bin":
        v = rng.choice(["!!!", "a", "YQ", base64.b64encode(os.urandom(3000)).decode(), "=" * 9])
        extra = [("x-meta-bin", v)]
        label = f"-bin header {_short(v, 16)}"
    else:
        k, v = rng.choice([("grpc-accept-encoding", "x" * 300), ("grpc-encoding", "gzip"),
                           ("grpc-status", "0"), ("grpc-message", "%zz"), ("content-length", "5"),
                           ("grpc-previous-rpc-attempts", "-1"), ("x-a", "\x7f\x01"),
                           ("x-a", "é"), ("", "empty name"), ("x a", "space")])
        extra = [(k, v)]
        label = f"header {_short(k, 20)}: {_short(v, 16)}"

    def frames(c: Ctx) -> bytes:
        return (h2_headers(1, _block(_grpc_head(c, path=path, extra=extra, auth=auth)),
                           end_stream=False) + h2_data(1, body))
    case = h2_case(label, frames)
    if kind in ("timeout", "registry-timeout"):
        case.check = _timeout_oracle(extra[0][1], strict=path == INFER)
    return case


_UNIT_S = {"H": 3600, "M": 60, "S": 1, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def _timeout_oracle(value: str, strict: bool) -> Callable[[Outcome, float], Optional[str]]:
    """What the gRPC spec says of `value` (1-8 ASCII digits, then H M S m u n), against the
    answer: a timeout of a second or more that expires at once has overflowed; with
    `strict` (ModelInfer, where the deadline is the server's own and docs/api.md honours
    grpc-timeout), one the spec does not allow should be refused, not served as if absent
    or misread. (Registry RPCs leave grpc-timeout to tonic, which ignores a bad one.)"""
    valid = re.fullmatch(r"[0-9]{1,8}[HMSmun]", value) is not None
    m = re.fullmatch(r"([0-9]+)([HMSmun])", value)
    seconds = int(m.group(1)) * _UNIT_S[m.group(2)] if m else None

    def check(out: Outcome, elapsed: float) -> Optional[str]:
        if seconds is not None and seconds >= 1 and out.code == "DEADLINE_EXCEEDED" \
                and elapsed < 0.5:
            return "grpc-timeout of a second or more expired at once (overflow)"
        if strict and not valid and out.code not in ("INVALID_ARGUMENT", "UNAUTHENTICATED") \
                and not out.code.startswith(("goaway:", "rst:", "http:")):
            return "grpc-timeout the gRPC spec does not allow, not refused"
        return None
    return check


# ============================================================ category: registry

REG = "/conduit.registry.v1.Registry/"
PROTECTED = {"add", "ident", "ops", "tokenizer", "minilm", "embedding-post", "paraphrase"}
HINTS = [  # (label, ExecutorHints fields) registered on add's bytes, then called once
    ("instances 4294967295", pv(7, 2**32 - 1)),
    ("max_queue_delay_us u64::MAX", pv(5, 2**64 - 1)),
    ("preferred_batch_sizes [4294967295]", pv(6, 2**32 - 1)),
    ("max_batch_size 4294967295", pv(4, 2**32 - 1)),
    ("max_queue_delay_us 2^63", pv(5, 2**63)),
    ("instances 1000", pv(7, 1000)),
    ("preferred_batch_sizes [0]", pv(6, 0)),
    ("max_batch_size 1, preferred [1024]", pv(4, 1) + pv(6, 1024)),
    ("replicas/autoscaling u32::MAX", pv(8, 2**32 - 1) + pv(9, 2**32 - 1) + pv(10, 2**32 - 1)
     + pv(11, 2**32 - 1) + pv(12, 2**32 - 1)),
    ("max_queue_delay_us 10^12", pv(5, 10**12)),
]


RUNAWAY_THREADS = 200  # more new threads than this within 3 s of a hint case's answer


def _safe_ref(ref: str, ctx: Ctx) -> str:
    """Deletes never name the modules the run needs."""
    bare = ref.split("/", 1)[1] if ref.startswith("default/") else ref
    name = re.split(r"[@:]", bare, 1)[0]
    if name in PROTECTED or any(d and d in ref for d in ctx.server.digests.values()):
        return "fz-absent@1.0.0"
    return ref


N17 = "a" * 17000
REGISTRY_SEEDS = [  # the first cases: one sharp value per RPC, then it is all random
    ("CollectGarbage", pv(1, 2**64 - 1), "grace_seconds u64::MAX"),
    ("CollectGarbage", pv(1, 2**63), "grace_seconds 2^63"),
    ("Resolve", pb(1, "blake3:" + "f" * 17000), "17,000-character digest"),
    ("Resolve", pb(1, N17), "17,000-character name"),
    ("Resolve", pb(1, "add@" + N17), "17,000-character version"),
    ("Tag", pb(1, "add@1.0.0") + pb(2, N17), "17,000-character tag"),
    ("Untag", pb(1, N17) + pb(2, "prod"), "17,000-character name"),
    ("Delete", pb(1, "fz@" + N17), "17,000-character version"),
    ("PutManifest", pv(1, 2) + pb(2, "fz-seed") + pb(3, "1.0.0") + pb(4, "blake3:" + N17),
     "17,000-character digest"),
    ("PutManifest", pv(1, 99) + pb(2, N17) + pb(3, "1.0.0"), "kind 99, 17,000-character name"),
    ("CheckPush", pv(1, 1) + pb(2, "fz-seed") + pb(3, "1.0.0") + pv(5, 2**64 - 1),
     "size u64::MAX"),
    ("CheckPush", pv(1, 1) + pb(2, "fz-seed") + pb(3, N17), "17,000-character version"),
    ("List", pv(3, 2**32 - 1) + pb(4, N17), "page_size u32::MAX, 17,000-character token"),
    ("Usage", pb(1, N17), "17,000-character tenant"),
    ("CreateTenant", pb(1, N17) + pv(2, 2**64 - 1), "17,000-character name"),
    ("CreateTenant", pb(1, "fz-tenant") + pv(2, 2**64 - 1) + pv(3, 2**64 - 1),
     "limits u64::MAX"),
    ("DeleteTenant", pb(1, N17) + pv(2, 1), "17,000-character name"),
    ("RotateKey", pb(1, N17), "17,000-character tenant"),
    ("DownloadBlob", pb(1, "blake3:" + N17), "17,000-character digest"),
]


def build_registry(ctx: Ctx, rng: random.Random, index: int) -> Case:
    if index < len(REGISTRY_SEEDS):
        method, msg, label = REGISTRY_SEEDS[index]
        kind = "server-stream" if method == "DownloadBlob" else "unary"
        return Case(f"{method} {label}", lambda c: grpc_call(c, REG + method, msg, kind=kind))
    method = rng.choice(REGISTRY_UNARY + ["UploadBlob", "UploadBlob", "DownloadBlob",
                                          "Resolve", "CollectGarbage", "PutManifest", "garbage"])
    h = lambda: hostile_str(rng)  # noqa: E731
    big = lambda: rng.choice([0, 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1])  # noqa: E731
    if method == "garbage":
        m = rng.choice(REGISTRY_UNARY)
        data = rng.randbytes(rng.choice([1, 7, 100, 4096]))
        return Case(f"{m} random bytes", lambda c: grpc_call(c, REG + m, data))
    if method == "UploadBlob":
        return _upload_case(rng)
    if method == "DownloadBlob":
        d = rng.choice([h(), ctx.server.digests.get("add", ""), "blake3:" + "0" * 64])
        return Case(f"DownloadBlob {_short(d, 30)}",
                    lambda c: grpc_call(c, REG + method, pb(1, d), kind="server-stream"))
    if method == "Resolve":
        msg, label = pb(1, h()), ""
    elif method == "CollectGarbage":
        g = rng.choice([None, 0, 1, 3600, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 10**15, 2**62])
        msg, label = (b"" if g is None else pv(1, g)), f"grace_seconds {g}"
    elif method == "PutManifest":
        name = rng.choice([h(), "fz-" + str(index)])
        name = "fz-protected" if name in PROTECTED or name.lower() in PROTECTED else name
        kind = rng.choice([0, 1, 2, 3, 4, 99, 2**64 - 1])
        digest = rng.choice([h(), ctx.server.digests.get("add", ""),
                             ctx.server.digests.get("ops", ""), "blake3:" + "0" * 64])
        hints = rng.choice([b"", pv(4, big()) + pv(7, big()), pb(1, h()) + pb(2, h()) + pb(3, h()),
                            b"".join(pv(6, big()) for _ in range(1000))])
        tags = [rng.choice([h(), "latest", "prod"]) for _ in range(rng.choice([0, 1, 1000]))]
        refs = [rng.choice([h(), "add@1.0.0", name + "@1.0.0"]) for _ in range(rng.choice([0, 2]))]
        msg = (pv(1, kind) + pb(2, name) + pb(3, rng.choice(VERSIONS + ["1.0.0"])) + pb(4, digest)
               + (pb(5, hints) if hints else b"") + b"".join(pb(6, t) for t in tags)
               + b"".join(pb(7, r) for r in refs))
        label = f"kind {kind} name {_short(name, 20)} digest {_short(digest, 20)} {len(tags)} tags"
    elif method == "List":
        msg = (pv(1, rng.choice([0, 3, 99, 2**64 - 1])) + pb(2, rng.choice(["", h()]))
               + pv(3, big()) + pb(4, rng.choice(["", h(), "-1", "AAAA", "\u0000"])))
        label = "odd filters/page"
    elif method == "Tag":
        msg, label = pb(1, rng.choice(["add@1.0.0", h()])) + pb(2, h()), ""
    elif method == "Untag":
        msg, label = pb(1, rng.choice(["add", h()])) + pb(2, h()), ""
    elif method == "Delete":
        msg, label = pb(1, _safe_ref(h(), ctx)), ""
    elif method == "CreateTenant":
        msg = pb(1, h()) + pv(2, big()) + pv(3, big())
        label = "odd name/limits"
    elif method == "CheckPush":
        msg = (pv(1, rng.choice([0, 1, 2, 99])) + pb(2, h()) + pb(3, rng.choice(VERSIONS))
               + pb(4, h()) + pv(5, big()) + pb(6, h()))
        label = "odd fields"
    elif method in ("Usage", "DeleteTenant", "RotateKey"):
        t = h()
        if t.strip().lower() in ("", "default") or "default" in t.lower():
            t = "fz-nobody"  # rotating or deleting our own tenant would lock the run out
        msg = pb(1, t) + (pv(2, rng.choice([0, 1])) if method == "DeleteTenant" else b"")
        label = f"tenant {_short(t, 30)}"
    else:  # ListTenants, Whoami
        msg, label = rng.choice([b"", pb(1, h()), pv(99, 1)]), "extra fields"
    if rng.random() < 0.15:
        msg, op = bit_flip(rng, msg)
        label += f" ({op})"
    if not label:
        label = _short(msg[:80], 50)
    md = None
    if rng.random() < 0.05:
        md = rng.choice([[], [("authorization", "Bearer " + "k" * 17000)],
                         [("authorization", "Basic YTpi")]])
        label += "; odd auth"
    return Case(f"{method} {label}", lambda c: grpc_call(c, REG + method, msg, metadata=md))


def _upload_case(rng: random.Random) -> Case:
    header = lambda size, digest="": pb(1, pv(1, size) + pb(2, digest))  # noqa: E731
    chunk = lambda n: pb(2, bytes(n))  # noqa: E731
    v = rng.choice(["hugesize", "more", "less", "digest", "digest17k", "chunkfirst", "twoheaders",
                    "empty", "zero", "manychunks", "both", "garbage"])
    msgs = {
        "hugesize": [header(2**64 - 1)],
        "more": [header(10), chunk(20)],
        "less": [header(20), chunk(10)],
        "digest": [header(4, "blake3:" + "0" * 64), chunk(4)],
        "digest17k": [header(4, "blake3:" + "f" * 17000), chunk(4)],
        "chunkfirst": [chunk(4), header(4)],
        "twoheaders": [header(4), header(4), chunk(4)],
        "empty": [],
        "zero": [header(0)],
        "manychunks": [header(1000)] + [chunk(1)] * 1000,
        "both": [header(4) + pb(2, bytes(4))],
        "garbage": [rng.randbytes(50)],
    }[v]
    return Case(f"UploadBlob {v}", lambda c: grpc_call(c, REG + "UploadBlob", msgs,
                                                        kind="client-stream"))


def _hint_case(ctx: Ctx, index: int, label: str, hints: bytes) -> Case:
    name = f"fzhint-{index}"

    def run(c: Ctx) -> Outcome:
        threads = c.server.status().get("Threads", 0)
        msg = (pv(1, 2) + pb(2, name) + pb(3, "1.0.0") + pb(4, c.server.digests["add"])
               + pb(5, hints))
        out = grpc_call(c, REG + "PutManifest", msg)
        if out.code != "OK":
            return out
        r = kpb.ModelInferRequest(model_name=name)
        r.inputs.add(name="x", datatype="FP32", shape=[1, 4])
        r.raw_input_contents.append(bytes(16))
        r.parameters["timeout"].int64_param = 1_000_000  # µs: add answers in microseconds
        out = grpc_call(c, INFER, r.SerializeToString())
        out.registered = True
        # Threads that keep coming after the answer would take the machine down sooner or
        # later (the watchdog's cap): say so now, deterministically, rather than by chance.
        for k in range(30):
            now = c.server.status().get("Threads", 0)
            if now > threads + RUNAWAY_THREADS:
                out.crash = (f"runaway: {now} threads, {threads} before the case, still "
                             "growing after its answer")
                break
            if k >= 5 and now <= threads + 20:
                break  # settled
            time.sleep(0.1)
        return out

    def check(out: Outcome, elapsed: float) -> Optional[str]:
        if out.registered and out.code != "OK":
            return "absurd executor hints accepted, then the model does not serve"
        return None
    return Case(f"PutManifest add's bytes with {label}, then ModelInfer", run, check=check)


def build_executor_hints(ctx: Ctx, rng: random.Random, index: int) -> Case:
    """Each absurd hint once (a registration, then one call with a 1 s deadline)."""
    return _hint_case(ctx, index, *HINTS[index]) if index < len(HINTS) else None


BUILDERS = {
    "http-json": lambda c, r, i: build_http_json(c, r),
    "http-binary": lambda c, r, i: build_http_binary(c, r),
    "http-raw": build_http_raw,
    "grpc-proto": build_grpc_proto,
    "grpc-framing": build_grpc_framing,
    "grpc-metadata": build_grpc_metadata,
    "registry": build_registry,
    "executor-hints": build_executor_hints,  # last: it can take the server down
}
WEIGHTS = {"http-json": 3, "http-binary": 1.5, "http-raw": 2, "grpc-proto": 3,
           "grpc-framing": 1.5, "grpc-metadata": 1.5, "registry": 2, "executor-hints": 1.5}


# ============================================================ the run


@dataclass
class Stats:
    cases: Counter = field(default_factory=Counter)
    codes: dict = field(default_factory=dict)
    seconds: Counter = field(default_factory=Counter)
    build_seconds: Counter = field(default_factory=Counter)
    findings: dict = field(default_factory=dict)  # kind -> {"count", "example"}
    crashes: list = field(default_factory=list)
    hangs: list = field(default_factory=list)
    fuzzer_errors: list = field(default_factory=list)
    restarts: int = 0
    probes: int = 0

    slowest: dict = field(default_factory=dict)  # category -> example of its slowest case
    rss_after: dict = field(default_factory=dict)  # category -> server VmRSS (KiB) after it

    def finding(self, kind: str, example: dict) -> None:
        """Counts a finding; keeps one example per category and message shape."""
        f = self.findings.setdefault(kind, {"count": 0, "where": Counter(), "shapes": {}})
        cat = example["case"].split("#")[0]
        f["count"] += 1
        f["where"][cat] += 1
        text = example.get("log") or example["message"]
        shape = f"{cat}: {example['code']} {_message_shape(text)}"
        entry = f["shapes"].setdefault(shape, {"count": 0, "example": example})
        entry["count"] += 1


def _message_shape(message: str) -> str:
    """A message with what it quotes and its numbers blanked: `model `…` has no input `…``."""
    m = re.sub(r"`[^`]*(`|$)", "`…`", message[:2000])
    m = re.sub(r"task \d+|\d+", "N", m)
    m = re.sub(r"'[^']{20,}'", "'…'", m)
    return m[:70]


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="conduit-fuzz-"))
        self.stats = Stats()
        self.server: Optional[Server] = None
        self.ctx: Optional[Ctx] = None
        self.watchdog: Optional[Watchdog] = None
        self.lives: list[dict] = []  # per server started: memory before, at its end, idle
        self.since_probe = 0
        self.case_log = open(args.cases_log, "w") if args.cases_log else None

    def start_server(self) -> None:
        life = self.root / f"server{self.stats.restarts}"
        life.mkdir()
        self.server = Server(self.args, life)
        self.server.start()
        self.server.register()
        if self.ctx is None:
            self.ctx = Ctx(self.server, self.args.case_timeout, self.args.slow_cap)
        self.ctx.server, self.ctx.session_id = self.server, ""
        self.ctx.connect()
        err = probe(self.ctx) or warm_up(self.ctx)
        if err:
            raise RuntimeError(f"the known-good request fails before fuzzing: {err}")
        self.watchdog = Watchdog(self.server, self.args.max_threads, self.args.max_rss_mib)
        self.watchdog.start()
        self.lives.append({"before": self.server.status()})

    def end_life(self, ended: str) -> None:
        """Closes the current server's record: its last memory sample unless the
        measurement after the main categories took it already, its peak threads, its end."""
        life = self.lives[-1]
        life.setdefault("after", self.server.status() or dict(self.watchdog.last))
        life["peak_threads"] = max(self.watchdog.peak_threads, life["after"].get("Threads", 0))
        life["peak_hwm"] = max(self.server.status().get("VmHWM", 0),
                               self.watchdog.last.get("VmHWM", 0))
        life["ended"] = ended

    def restart(self, why: str) -> bool:
        self.end_life(f"crash: {why}")
        self.watchdog.stopped.set()
        self.server.stop(kill=True)
        if self.stats.restarts >= self.args.max_restarts:
            print(f"  crash ({why}); no restarts left", file=sys.stderr)
            return False
        self.stats.restarts += 1
        print(f"  crash ({why}); restarting the server", file=sys.stderr)
        try:
            self.start_server()
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
            print(f"  the restart failed: {e}", file=sys.stderr)
            self.stats.crashes.append({"case": "restart", "label": "", "reason": str(e)[:500],
                                       "log": ""})
            return False
        return True

    def crash_reason(self, check_probe: bool, out: Optional[Outcome] = None) -> Optional[str]:
        if out is not None and out.crash:
            return out.crash
        if self.watchdog.tripped:
            return f"runaway: {self.watchdog.tripped} (killed by the fuzzer)"
        if not self.server.alive():
            return f"server exited with status {self.server.proc.returncode}"
        if check_probe:
            self.stats.probes += 1
            err = probe(self.ctx)
            if err:
                time.sleep(1.0)
                err2 = probe(self.ctx)
                if err2:
                    return f"known-good probe failed: {err2}"
        return None

    def run_case(self, cat: str, index: int, case: Case, verbose: bool = False) -> Outcome:
        ctx = self.ctx
        start = time.monotonic()
        try:
            out = case.run(ctx)
        except Exception as e:  # a bug of ours, not the server's
            out = Outcome(f"fuzzer-error:{type(e).__name__}", str(e)[:300])
            self.stats.fuzzer_errors.append({"case": f"{cat}#{index}", "label": case.label,
                                             "error": traceback.format_exc(limit=3)[-600:]})
        elapsed = time.monotonic() - start
        if out.code in ("reset", "closed", "timeout") and cat in ("http-json", "http-binary"):
            ctx.conn.close()
        st = self.stats
        st.cases[cat] += 1
        st.seconds[cat] += elapsed
        st.codes.setdefault(cat, Counter())[out.code] += 1
        ex = {"case": f"{cat}#{index}", "label": case.label[:200], "code": out.code,
              "message_bytes": out.message_bytes, "message": out.message[:300],
              "seconds": round(elapsed, 3)}
        if out.code in ("INTERNAL", "500", "rst:INTERNAL_ERROR", "goaway:INTERNAL_ERROR"):
            st.finding("INTERNAL / 500 answer to client garbage", ex)
        if out.message_bytes > MESSAGE_LIMIT:
            st.finding(f"error message over {MESSAGE_LIMIT:,} bytes", ex)
        if out.code in ("closed", "reset") and case.expect_answer:
            st.finding("well-framed HTTP request dropped without an answer", ex)
        if out.code == "timeout" and case.complete:
            st.hangs.append(ex)
        kind = case.check(out, elapsed) if case.check else None
        if kind:
            st.finding(kind, ex)
        log = self.server.new_log()
        if "panicked" in log:
            line = next(l for l in log.splitlines() if "panicked" in l)
            st.finding("panic in the server log", dict(ex, log=line.strip()[:300]))
        if self.case_log:
            self.case_log.write(json.dumps(ex) + "\n")
        if elapsed > st.slowest.get(cat, {}).get("seconds", -1):
            st.slowest[cat] = ex
        if verbose:
            print(json.dumps(ex, indent=2))
            if log:
                print("server log:\n" + log[-3000:])
        return out

    def fuzz(self) -> None:
        """The categories in turn, each for its share of --seconds; memory is measured
        right after the main ones and after the idle wait; executor-hints comes last (it
        can take a server down, so it runs after the measurements)."""
        a = self.args
        cats = categories(a)
        total_w = sum(WEIGHTS[c] for c in cats)
        per_cat_cases = max(1, a.max_cases // len(cats)) if a.max_cases else None
        started = time.monotonic()
        idle_s = 0.0
        for cat in cats:
            if cat == "executor-hints":
                idle_s = self.measure()
            if not self.run_category(cat, a.seconds * WEIGHTS[cat] / total_w, per_cat_cases):
                break
        else:
            if "executor-hints" not in cats:
                idle_s = self.measure()
            else:
                self.check("end of run")
        self.elapsed = time.monotonic() - started - idle_s
        if "ended" not in self.lives[-1]:
            self.end_life("end of run")

    def run_category(self, cat: str, budget: float, max_cases: Optional[int]) -> bool:
        """Runs one category's cases for `budget` seconds; False when out of restarts."""
        a = self.args
        end = time.monotonic() + budget
        index = 0
        print(f"  {cat} …", file=sys.stderr, flush=True)
        while time.monotonic() < end and (max_cases is None or index < max_cases):
            rng = random.Random(f"{a.seed}/{cat}/{index}")
            built = time.monotonic()
            try:
                case = BUILDERS[cat](self.ctx, rng, index)
            except Exception as e:  # a bug of ours: recorded, the run goes on
                case = Case("(the case could not be built)", _raiser(e))
            if case is None:
                break  # a category with a fixed list of cases is done
            self.stats.build_seconds[cat] += time.monotonic() - built
            out = self.run_case(cat, index, case)
            index += 1
            self.since_probe += 1
            probe_now = self.since_probe >= a.probe_every
            if probe_now:
                self.since_probe = 0
            if not self.check(f"{cat}#{index - 1}", case.label, probe_now, out):
                return False
        self.stats.rss_after[cat] = self.server.status().get("VmRSS", 0)
        return True

    def check(self, where: str, label: str = "", probe_now: bool = True,
              out: Optional[Outcome] = None) -> bool:
        """Records a crash, and restarts the server, if there is one; False when out of
        restarts."""
        why = self.crash_reason(probe_now, out)
        if not why:
            return True
        self.stats.crashes.append({"case": where, "label": label, "reason": why,
                                   "log": _log_tail(self.server.log_path)})
        return self.restart(why)

    def measure(self) -> float:
        """Memory right after fuzzing, then after --idle-seconds; returns the idle time."""
        if not self.check("end of fuzzing"):
            return 0.0
        life = self.lives[-1]
        life["after"] = self.server.status()
        if self.args.idle_seconds <= 0:
            return 0.0
        print(f"  idle {self.args.idle_seconds:g} s …", file=sys.stderr, flush=True)
        time.sleep(self.args.idle_seconds)
        life["idle"] = self.server.status()
        self.check("after the idle wait")
        return self.args.idle_seconds

    def close(self) -> None:
        if self.case_log:
            self.case_log.close()
        if self.watchdog:
            self.watchdog.stopped.set()
        if self.ctx and self.ctx.channel:
            self.ctx.channel.close()
        if self.server:
            self.server.stop()
        if self.args.keep:
            print(f"kept {self.root}", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def categories(args: argparse.Namespace) -> list[str]:
    return [c for c in BUILDERS
            if (not args.only or c in args.only) and c not in (args.skip or [])]


def _raiser(e: Exception) -> Callable[[Ctx], Outcome]:
    def run(c: Ctx) -> Outcome:
        raise e
    return run


def _log_tail(path: Path) -> str:
    try:
        return path.read_text("utf-8", "replace")[-1500:]
    except OSError:
        return ""


# ============================================================ the report


def report(r: Runner) -> dict:
    st, a = r.stats, r.args
    total = sum(st.cases.values())
    elapsed = getattr(r, "elapsed", 0.0)
    out = {
        "seed": a.seed, "seconds": a.seconds, "case_timeout_s": a.case_timeout,
        "elapsed_s": round(elapsed, 1), "total_cases": total,
        "cases_per_s": round(total / elapsed, 1) if elapsed else 0,
        "categories": {c: {"cases": st.cases[c], "seconds": round(st.seconds[c], 1),
                           "build_seconds": round(st.build_seconds[c], 1),
                           "codes": dict(st.codes.get(c, Counter()).most_common()),
                           "slowest": st.slowest.get(c),
                           "rss_after_mib": round(st.rss_after.get(c, 0) / 1024, 1)}
                       for c in st.cases},
        "findings": {k: {"count": v["count"], "where": dict(v["where"]),
                         "shapes": v["shapes"]} for k, v in st.findings.items()},
        "crashes": st.crashes, "hangs": st.hangs, "fuzzer_errors": st.fuzzer_errors,
        "restarts": st.restarts, "probes": st.probes,
        "servers": [{
            "rss_mib": {k: round(life[k].get("VmRSS", 0) / 1024, 1)
                        for k in ("before", "after", "idle") if k in life},
            "threads": {k: life[k].get("Threads", 0)
                        for k in ("before", "after", "idle") if k in life},
            "peak_rss_mib": round(max([life.get("peak_hwm", 0)] + [
                life[k].get("VmHWM", 0) for k in ("before", "after", "idle") if k in life])
                / 1024, 1),
            "peak_threads": life.get("peak_threads", 0), "ended": life.get("ended", "")}
            for life in r.lives],
        "idle_seconds": a.idle_seconds,
    }
    binary = Path(a.conduit)
    built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(binary.stat().st_mtime))
    out["binary"] = {"path": str(binary), "modified": built, "bytes": binary.stat().st_size}
    print(f"\n## Black-box fuzz of conduit dev (seed {a.seed}, {a.seconds:g} s budget)\n")
    print(f"binary {binary} (modified {built}); case timeout {a.case_timeout:g} s; the server's "
          "request deadline 5 s (--limits)\n")
    print("| category | cases | s | cases/s | slowest case (s) | RSS after (MiB) | answers (most "
          "common first) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for c, v in out["categories"].items():
        secs = v["seconds"] + v["build_seconds"]
        rate = v["cases"] / secs if secs else 0
        slow = v["slowest"]["seconds"] if v["slowest"] else 0
        codes = ", ".join(f"{k} ×{n}" for k, n in v["codes"].items())
        print(f"| {c} | {v['cases']} | {secs:.1f} | {rate:.0f} | {slow:.2f} | "
              f"{v['rss_after_mib']:g} | {codes} |")
    print(f"\n{total} cases in {elapsed:.1f} s ({out['cases_per_s']} cases/s); "
          f"{st.probes} known-good probes; {st.restarts} restart(s)\n")
    print(f"**crashes: {len(st.crashes)}**, **hangs: {len(st.hangs)}** (goal 0 and 0)\n")
    for c in st.crashes:
        print(f"- crash at {c['case']} ({c['label'][:100]}): {c['reason']}")
    seen = set()
    for hng in st.hangs:
        if hng["label"] in seen:
            continue
        seen.add(hng["label"])
        print(f"- hang: {hng['case']} {hng['label'][:120]} (no answer in {a.case_timeout:g} s)")
    print("\n### Findings\n")
    if not st.findings:
        print("none")
    for k, v in st.findings.items():
        where = ", ".join(f"{c} {n}" for c, n in v["where"].items())
        shapes = sorted(v["shapes"].items(), key=lambda kv: -kv[1]["count"])
        print(f"- **{k}**: {v['count']} ({where}); {len(shapes)} kind(s) of answer, "
              "one example each:")
        for shape, entry in shapes[:a.max_shapes]:
            e = entry["example"]
            print(f"  - ×{entry['count']} {e['case']} `{e['label'][:100]}` → {e['code']}"
                  f" ({e['message_bytes']:,} B): {e['message'][:140]!r}")
            if "log" in e:
                print(f"    log: {e['log'][:200]}")
        if len(shapes) > a.max_shapes:
            print(f"  - … {len(shapes) - a.max_shapes} more kinds (--json has them all)")
    if st.fuzzer_errors:
        print(f"\n{len(st.fuzzer_errors)} fuzzer error(s) (bugs of this script), first:\n"
              + st.fuzzer_errors[0]["error"])
    print("\n### Server memory (VmRSS from /proc/PID/status)\n")
    print("| server | RSS before (MiB) | right after | after idle | peak RSS | threads before "
          "/ after / idle / peak | ended by |")
    print("|---|---:|---:|---:|---:|---|---|")
    for k, life in enumerate(out["servers"]):
        rss, th = life["rss_mib"], life["threads"]
        cell = lambda d, key: f"{d[key]:g}" if key in d else "—"  # noqa: E731
        print(f"| {k + 1} | {cell(rss, 'before')} | {cell(rss, 'after')} | {cell(rss, 'idle')} | "
              f"{life['peak_rss_mib']:g} | {cell(th, 'before')} / {cell(th, 'after')} / "
              f"{cell(th, 'idle')} / {life['peak_threads']} | {life['ended'][:90]} |")
    print(f"\n\"right after\": when fuzzing stopped (or, for a server that crashed, its last "
          f"sample); idle wait {a.idle_seconds:g} s. Warm component instances are released "
          f"after {IDLE_INSTANCE_TTL_S} s idle (`idle_instance_ttl`, docs/isolation.md; "
          "`conduit dev` has no flag for it); loaded models and registered modules stay.")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conduit", required=True, help="the conduit binary")
    ap.add_argument("--wasm-dir", required=True, help="the built components")
    ap.add_argument("--model", default="",
                    help="MiniLM ONNX: also register the paraphrase pipeline (empty: skip)")
    ap.add_argument("--seconds", type=float, default=20, help="total budget of the fuzzing")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-cases", type=int, default=0, help="cap on cases (0: none)")
    ap.add_argument("--only", action="append", choices=list(BUILDERS),
                    help="run only this category (repeatable)")
    ap.add_argument("--skip", action="append", choices=list(BUILDERS),
                    help="leave this category out (repeatable)")
    ap.add_argument("--case", help="run one case again, verbosely: CATEGORY:INDEX")
    ap.add_argument("--list", type=int, default=0, metavar="N",
                    help="print the labels of each category's first N cases, run nothing")
    ap.add_argument("--case-timeout", type=float, default=10.0,
                    help="seconds to wait for an answer to a complete request (hang past it)")
    ap.add_argument("--slow-cap", type=float, default=1.0,
                    help="seconds an incomplete (slowloris) request is held")
    ap.add_argument("--probe-every", type=int, default=200)
    ap.add_argument("--idle-seconds", type=float, default=30)
    ap.add_argument("--max-threads", type=int, default=1500,
                    help="server threads past which it is killed as a runaway")
    ap.add_argument("--max-rss-mib", type=int, default=6144)
    ap.add_argument("--max-restarts", type=int, default=3)
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--cases-log", help="write every case's answer here (JSON lines)")
    ap.add_argument("--strict", action="store_true", help="findings fail the run too")
    ap.add_argument("--max-shapes", type=int, default=8,
                    help="examples printed per finding (kinds of answer)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    args = ap.parse_args()

    r = Runner(args)
    started = time.monotonic()
    try:
        try:
            r.start_server()
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
            print(f"setup failed: {e}", file=sys.stderr)
            return 2
        print(f"conduit dev pid {r.server.proc.pid}: gRPC {r.server.grpc[1]}, HTTP "
              f"{r.server.http[1]}; modules {', '.join(r.server.models)}; setup "
              f"{time.monotonic() - started:.1f} s", file=sys.stderr)
        if args.list:
            for cat in categories(args):
                for i in range(args.list):
                    case = BUILDERS[cat](r.ctx, random.Random(f"{args.seed}/{cat}/{i}"), i)
                    print(f"{cat}:{i}\t{case.label[:150]}")
            return 0
        if args.case:
            cat, _, idx = args.case.partition(":")
            case = BUILDERS[cat](r.ctx, random.Random(f"{args.seed}/{cat}/{int(idx)}"), int(idx))
            print(f"{cat}#{idx}: {case.label}")
            out = r.run_case(cat, int(idx), case, verbose=True)
            why = r.crash_reason(True, out)
            print(f"server afterwards: {why or 'serving'}")
            return 1 if why else 0
        r.fuzz()
        out = report(r)
        out["wall_s"] = round(time.monotonic() - started, 1)
        print(f"\nwall time {out['wall_s']} s (setup, fuzzing, idle wait)")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2, default=str))
        if r.stats.crashes or r.stats.hangs:
            return 1
        return 1 if args.strict and r.stats.findings else 0
    finally:
        r.close()


if __name__ == "__main__":
    sys.exit(main())

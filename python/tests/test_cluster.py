"""A session in a real cluster, started with one `conduit cluster up` (NATS, the registry,
two schedulers, a gateway and two runners as local processes): its runner killed with -9
mid-chain, the client reopens through the gateway on the other runner, replays the logged
calls, and the score is the same bits."""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, TypeVar

import numpy as np

import conduit
from conduit._local import _onnxruntime_library
from conftest import A, B, C, REPO, register_modules

# Bounds of the waits (seconds): generous for a loaded 2-core machine.
UP = 90.0
LIVE = 60.0
STOP = 60.0

RUNNERS = 2
# `cluster up --help`: gateway HTTP +0, gRPC +1, registry +2, NATS +3, scheduler i's
# /metrics +4+i, runner i gRPC +10+2i and HTTP +11+2i.
PORTS = 10 + 2 * RUNNERS

# The paraphrase pipeline's tokenizer parameters (examples/pipelines/paraphrase.toml).
TOKENIZE = {"max_length": 256, "padding": "longest"}
STEPS = ["paraphrase@1.0.0", "tokenizer@1.0.0", "minilm@1.0.0", "embedding-post@1.0.0"]

T = TypeVar("T")


def free_base() -> int:
    """A port base whose PORTS ports on 127.0.0.1 all bind now (below the usual ephemeral
    range, where ports the system picks for others do not land)."""
    for _ in range(100):
        base = random.randrange(15_000, 32_000 - PORTS)
        socks: List[socket.socket] = []
        try:
            for port in range(base, base + PORTS):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {PORTS} free consecutive ports on 127.0.0.1")


def wait_for(what: str, bound: float, probe: Callable[[], Optional[T]], state=lambda: "") -> T:
    """Polls `probe` until it returns something other than None, for at most `bound`."""
    deadline = time.monotonic() + bound
    while True:
        got = probe()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {bound:g} s\n{state()}")
        time.sleep(0.2)


class ClusterUp:
    """`conduit cluster up --runners RUNNERS` in `dir`, in a process group of its own: its
    children (NATS, registry, schedulers, gateway, runners) are in it too, so `kill` reaches
    every process this cluster started and nothing else."""

    def __init__(self, binary: Path, dir: Path) -> None:
        self.binary = binary
        self.dir = dir
        self.base = free_base()
        self.gateway = f"127.0.0.1:{self.base + 1}"
        self.registry = f"127.0.0.1:{self.base + 2}"
        self.nats = f"nats://127.0.0.1:{self.base + 3}"
        env = dict(os.environ)
        env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        if not env.get("ORT_DYLIB_PATH"):  # the runners' ONNX Runtime, as conduit.local does
            lib = _onnxruntime_library()
            if lib:
                env["ORT_DYLIB_PATH"] = lib
        self.env = env
        dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = dir.parent / f"{dir.name}.stderr"
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [str(binary), "cluster", "up", "--port-base", str(self.base), "--dir", str(dir),
                 "--runners", str(RUNNERS)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                env=env, start_new_session=True,
            )
        self.printed: List[str] = []
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode(errors="replace").rstrip("\n"))
        self._lines.put(None)

    def _take(self, timeout: float) -> Optional[str]:
        line = self._lines.get(timeout=timeout)
        if line is not None:
            self.printed.append(line)
        return line

    def state(self) -> str:
        logs = "".join(
            f"\n--- {p.name} (tail)\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
            for p in sorted((self.dir / "logs").glob("*.log"))
        )
        stderr = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return "\n".join(self.printed) + f"\n--- stderr\n{stderr}{logs}"

    def wait_up(self) -> str:
        """Waits until it says it is up; returns the admin key."""
        deadline = time.monotonic() + UP
        while not any("Ctrl-C stops the cluster" in l for l in self.printed):
            left = deadline - time.monotonic()
            try:
                if left <= 0 or self._take(left) is None:
                    raise queue.Empty
            except queue.Empty:
                raise AssertionError(
                    f"cluster up did not come up within {UP:g} s "
                    f"(exit {self.process.poll()}):\n{self.state()}"
                ) from None
        assert f"  NATS: {self.nats}" in self.printed, self.printed
        return (self.dir / "admin.key").read_text().strip()

    def status(self) -> dict:
        out = subprocess.run(
            [str(self.binary), "cluster", "status", "--json", "--nats", self.nats],
            capture_output=True, text=True, timeout=30, env=self.env,
        )
        return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else {}

    def _live(self) -> Iterator[Tuple[int, List[str], int]]:
        """(pid, argv, process group) of every live process (zombies left out)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
                state, _ppid, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, IndexError):
                continue
            if state != "Z":
                yield int(entry.name), argv, int(pgrp)

    def group(self) -> List[Tuple[int, List[str]]]:
        """Every live process of this cluster's process group."""
        return [(pid, argv) for pid, argv, pgrp in self._live() if pgrp == self.process.pid]

    def runner(self, runner_id: str) -> Tuple[int, List[str]]:
        """(pid, argv) of `conduit runner --id runner_id` whose data directory is in this
        cluster's directory (a runner of another cluster is never taken)."""
        inside = f"{self.dir}{os.sep}"
        found = [
            (pid, argv) for pid, argv, _ in self._live()
            if argv[1:2] == ["runner"]
            and any(a == "--id" and b == runner_id for a, b in zip(argv, argv[1:]))
            and any(a.startswith(inside) for a in argv)
        ]
        assert len(found) == 1, (runner_id, found)
        return found[0]

    def live_runners(self) -> Optional[set]:
        """The live runners' ids once a scheduler leads, else None."""
        s = self.status()
        return {r["id"] for r in s.get("runners", [])} if s.get("leader") else None

    def interrupt(self) -> int:
        """Ctrl-C: every process stops; returns the exit status."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(STOP)
        try:
            while self._take(5.0) is not None:  # what it printed while stopping
                pass
        except queue.Empty:
            pass
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL to every process of this cluster still there. While `cluster up` is not
        reaped its pid is taken, so its process group is this cluster's; once reaped, the
        leftovers of the group are killed one by one."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP)
        for pid, _ in self.group():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_killed_runner_is_replayed_in_a_cluster(tmp_path, wasm_dir, model_path, fixtures_dir):
    up = ClusterUp(conduit.find_binary(), tmp_path / "cluster")
    try:
        key = up.wait_up()
        register_modules(
            conduit.ModuleRepository(up.registry, key), wasm_dir, model_path, fixtures_dir
        )
        ids = {f"runner-{i}" for i in range(RUNNERS)}
        wait_for(
            "a leader and both runners live", LIVE,
            lambda: True if up.live_runners() == ids else None, up.state,
        )

        with conduit.Session(up.gateway, STEPS, api_key=key) as session:
            first = session.runner_id
            assert first in ids, first
            assert session.runner_address, "the gateway names the runner"
            paraphrase, tokenizer, minilm, post = (session.new_module(r) for r in STEPS)
            text = [[A], [B], [A], [C]]
            expected = paraphrase.run(text=text, fetch=["similarity"])["similarity"].numpy()
            assert expected.shape == (2,) and expected[0] > expected[1], expected

            # Half the chain on the runner, nothing fetched.
            tok = tokenizer.run(text=text, parameters=TOKENIZE)
            enc = minilm.run(
                input_ids=tok["input_ids"],
                attention_mask=tok["attention_mask"],
                token_type_ids=tok["token_type_ids"],
            )
            assert session.stats().replays == 0

            # The session's runner dies.
            pid, argv = up.runner(first)
            assert argv[argv.index("--listen") + 1] == session.runner_address, argv
            os.kill(pid, signal.SIGKILL)
            wait_for("the runner gone", 10,
                     lambda: None if any(p == pid for p, _ in up.group()) else True, up.state)

            # The rest of the chain: reopened through the gateway on the other runner,
            # the logged calls replayed, the same bits.
            sim = post.run(
                last_hidden_state=enc["last_hidden_state"],
                attention_mask=tok["attention_mask"],
                fetch=["similarity"],
            )["similarity"].numpy()
            assert session.runner_id in ids - {first}, (first, session.runner_id)
            assert session.stats().replays == 1, session.stats()
            assert sim.dtype == expected.dtype == np.float32
            np.testing.assert_array_equal(sim.view(np.uint32), expected.view(np.uint32))

        assert up.interrupt() == 0, up.state()
        assert "conduit cluster stopped" in up.printed, up.state()
        assert up.group() == [], "left behind after Ctrl-C"
        # ~250 MB of blobs and caches; kept (with the logs) when the test fails.
        shutil.rmtree(up.dir)
    finally:
        up.kill()  # after a failure: nothing of this cluster is left running

"""conduit.aio against a real `conduit dev`: concurrent runs from one event loop."""

from __future__ import annotations

import asyncio

import numpy as np

import conduit
import conduit.aio
from conftest import A, B, BIAS, C


def test_asyncio_sessions_run_concurrently(server, registered, fixtures_dir):
    async def main():
        repo = await conduit.aio.ModuleRepository(server.addr, server.api_key)
        r = await repo.register_onnx("aio-add", "1.0.0", fixtures_dir / "add.onnx")
        assert r.reference == "aio-add@1.0.0"
        assert [e.version for e in await repo.list("aio-add")] == ["1.0.0"]

        async with conduit.aio.Session(
            server.addr, ["paraphrase@1.0.0"], api_key=server.api_key
        ) as session:
            paraphrase = await session.new_module("paraphrase@1.0.0")
            close, unrelated = await asyncio.gather(
                paraphrase.run(text=[[A], [B]]), paraphrase.run(text=[[A], [C]])
            )
            scores = await asyncio.gather(
                close["similarity"].numpy(), unrelated["similarity"].numpy()
            )
            assert scores[0][0] - scores[1][0] > 0.3

            add = await session.new_module("aio-add@1.0.0")
            y = (await add.run(x=np.zeros((1, 4), np.float32)))["y"]
            chained = (await add.run(x=y))["y"]  # an aio Value stays remote too
            np.testing.assert_array_equal(await chained.numpy(), [np.multiply(2, BIAS)])
            await y.release()
            assert session.stats().calls == 4

        # Awaiting opens too; closing twice is harmless.
        session = await conduit.aio.Session(server.addr, api_key=server.api_key)
        await session.close()
        await session.close()
        try:
            await session.new_module("paraphrase@1.0.0")
        except conduit.SessionClosed:
            pass
        else:
            raise AssertionError("a closed session pinned a module")

    asyncio.run(asyncio.wait_for(main(), timeout=120))

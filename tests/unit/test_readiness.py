"""`/readyz` says ready only while the worker serves: not while the server is still starting
(some worker does not listen yet), nor once SIGTERM came and the worker drains."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from pullthrough.api.app import build_app
from pullthrough.api.serving import ServingState
from pullthrough.config import Settings


# The request middleware keys request data by str, which aiohttp warns about; not what is
# tested here (the real server runs without warnings as errors).
async def test_readyz_is_503_while_starting_200_while_serving_and_503_once_stopping(
    tmp_path: Path,
) -> None:
    # Fails on the old behaviour: /readyz was 200 as soon as a worker answered at all.
    serving = ServingState()
    app = build_app(Settings(data_dir=tmp_path, rules=()), serving=serving)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        starting = await client.get("/readyz")
        starting_body = await starting.json()
        serving.serving()
        ready = await client.get("/readyz")
        ready_body = await ready.json()
        serving.stopping()
        stopping = await client.get("/readyz")
        stopping_body = await stopping.json()

    assert (starting.status, starting_body["status"]) == (503, "not ready")
    assert starting_body["checks"] == {"worker": "starting", "metadata": "ok", "storage": "ok"}
    assert (ready.status, ready_body["status"]) == (200, "ready")
    assert ready_body["checks"] == {"worker": "serving", "metadata": "ok", "storage": "ok"}
    assert (stopping.status, stopping_body["checks"]["worker"]) == (503, "stopping")


def test_a_stopping_worker_does_not_become_ready_again() -> None:
    # A late `serving` from the supervisor after SIGTERM must not undo the stop.
    serving = ServingState()
    serving.stopping()
    serving.serving()
    assert not serving.ready

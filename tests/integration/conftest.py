"""Fixtures of the integration tests on PostgreSQL: a database of their own, and several
pullthrough replicas behind nginx."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _failed
from tests.rig.postgres import create_database, drop_database
from tests.rig.replicas import Replicas

StartReplicas = Callable[..., Replicas]


@pytest.fixture
def start_replicas(
    rig_tools: None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StartReplicas]:
    """A factory: `start_replicas(rules, count=3, **options)` starts a `Replicas` (its own
    PostgreSQL database, `count` replicas, nginx in front; options as `Replicas` takes them);
    all stop at teardown and their databases are dropped, and a failed test prints the logs."""
    made: list[Replicas] = []

    def start(rules: list[dict[str, Any]], count: int = 3, **options: Any) -> Replicas:
        replicas = Replicas(tmp_path / f"replicas-{len(made)}", rules, count, **options)
        made.append(replicas)
        replicas.start()
        return replicas

    yield start
    if _failed(request):
        for replicas in made:
            print(replicas.logs())
    for replicas in made:
        replicas.stop()


@pytest.fixture
def database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)

"""Creation templates are matched by prefix (else ROOT) and copied at creation; leases let one
holder run a job at a time. Real SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pullthrough.metadata.leases import LeaseStore
from pullthrough.metadata.store import MetadataStore, sqlite_url
from pullthrough.metadata.template_names import ROOT
from pullthrough.metadata.templates import (
    CreationTemplate,
    TemplateStore,
    matching_template,
)


@pytest.fixture
async def metadata(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    store = await MetadataStore.open(sqlite_url(tmp_path / "metadata.sqlite"))
    yield store
    await store.close()


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ("docker-hub/library/nginx", "docker-hub"),
        ("docker-hub/acme/app", "docker-hub/acme"),
        ("ghcr/owner/app", ROOT),
        ("docker-hubby/x", ROOT),
    ],
)
def test_longest_prefix_else_root(repository: str, expected: str) -> None:
    templates = [CreationTemplate(prefix=p) for p in (ROOT, "docker-hub", "docker-hub/acme")]
    chosen = matching_template(templates, repository)
    assert chosen is not None
    assert chosen.prefix == expected


def test_no_template_no_settings() -> None:
    assert matching_template([CreationTemplate(prefix="ghcr")], "quay/x") is None


async def test_settings_are_copied_at_creation_and_later_edits_spare_them(
    metadata: MetadataStore,
) -> None:
    templates = TemplateStore(metadata.engine)
    await templates.put(CreationTemplate(prefix=ROOT, lifecycle_policy='{"v": 0}'))
    await templates.put(
        CreationTemplate(prefix="hub", lifecycle_policy='{"v": 1}', scan_on_pull=True)
    )
    await metadata.repositories.id("hub/library/nginx", "hub")
    await metadata.repositories.id("ghcr/o/app", "ghcr")
    await templates.put(CreationTemplate(prefix="hub", lifecycle_policy='{"v": 2}'))
    await metadata.repositories.id("hub/library/redis", "hub")

    nginx = await templates.settings("hub/library/nginx")
    assert nginx is not None
    assert (nginx.template_prefix, nginx.lifecycle_policy, nginx.scan_on_pull) == (
        "hub",
        '{"v": 1}',
        True,
    )
    redis = await templates.settings("hub/library/redis")
    assert redis is not None
    assert redis.lifecycle_policy == '{"v": 2}'
    app = await templates.settings("ghcr/o/app")
    assert app is not None
    assert app.template_prefix == ROOT

    assert await templates.set_lifecycle_policy("hub/library/nginx", '{"own": true}')
    nginx = await templates.settings("hub/library/nginx")
    assert nginx is not None
    assert nginx.lifecycle_policy == '{"own": true}'
    assert nginx.template_prefix == "hub"
    assert not await templates.set_lifecycle_policy("nope/x", None)


async def test_one_holder_at_a_time_until_the_lease_expires(metadata: MetadataStore) -> None:
    leases = LeaseStore(metadata.engine)
    assert await leases.acquire("lifecycle", "a", ttl=60)
    assert await leases.acquire("lifecycle", "a", ttl=60)  # renewing is fine
    assert not await leases.acquire("lifecycle", "b", ttl=60)
    await leases.release("lifecycle", "a")
    assert await leases.acquire("lifecycle", "b", ttl=-1)  # already expired when taken
    assert await leases.acquire("lifecycle", "c", ttl=60)

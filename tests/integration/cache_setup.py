"""A pullthrough server in front of a counting proxy in front of an upstream registry."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.rig.proxy import CountingProxy
from tests.rig.registry import UpstreamRegistry
from tests.rig.server import PullthroughServer

PREFIX = "up"
SECRET = "upstream-login"
SECRET_ENV = "PULLTHROUGH_SECRET_UPSTREAM_LOGIN"

BLOB_PATH = r"/blobs/sha256:"
MANIFEST_PATH = r"/manifests/"


@dataclass
class Cache:
    server: PullthroughServer
    proxy: CountingProxy
    upstream: UpstreamRegistry

    def ref(self, reference: str) -> str:
        """An image reference through the cache's prefix rule: `127.0.0.1:port/up/<reference>`."""
        return f"{self.server.host}/{PREFIX}/{reference}"

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url(path), timeout=120, **kwargs)

    def head(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.head(self.url(path), timeout=120, **kwargs)

    def upstream_blob_gets(self) -> int:
        return self.proxy.count("GET", path_contains=BLOB_PATH)

    def upstream_manifest_gets(self) -> int:
        return self.proxy.count("GET", path_contains=MANIFEST_PATH)

    def stored_blob(self, digest: str) -> Path:
        algorithm, hex_digest = digest.split(":")
        return self.server.data_dir / "blobs" / algorithm / hex_digest[:2] / hex_digest

    def committed(self, digest: str, timeout: float = 30) -> Path:
        """The stored blob, once its fill has committed: a client has every byte as soon as
        they are verified, a moment before the fsync and rename."""
        path = self.stored_blob(digest)
        wait_for(path.exists, timeout, f"blob {digest} to be committed")
        return path

    def spool_files(self) -> list[Path]:
        """Partial downloads on disk (a failed fill's small progress record may linger)."""
        return list((self.server.data_dir / "tmp").glob("*.part"))


def start_cache(
    make_proxy: Callable[[str], CountingProxy],
    start_pullthrough: Callable[..., PullthroughServer],
    upstream: UpstreamRegistry,
    settings: dict[str, Any] | None = None,
    *,
    credential_in_env: bool = True,
    **rule: Any,
) -> Cache:
    """A cache whose one rule, `up` (also the default), points at `upstream` through a new
    counting proxy; `settings` are top-level configuration keys, `rule` the rule's own. An
    upstream's credentials are passed in the environment unless `credential_in_env` is false
    (the rule still names SECRET: the test stores it with `pullthrough secrets put`)."""
    proxy = make_proxy(upstream.url)
    config: dict[str, Any] = {
        "prefix": PREFIX,
        "upstream": proxy.url,
        "default": True,
        "implicit_namespace": "library",
        **rule,
    }
    env = {}
    if upstream.credentials is not None:
        config["credential"] = SECRET
    if upstream.credentials is not None and credential_in_env:
        env = {
            f"{SECRET_ENV}_USERNAME": upstream.credentials[0],
            f"{SECRET_ENV}_PASSWORD": upstream.credentials[1],
        }
    server = start_pullthrough([config], env=env, **(settings or {}))
    return Cache(server, proxy, upstream)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

"""The pulling client, run as its own process so it never shares a GIL with the harness (whose
thread runs the counting proxy): `python -m bench.client BASE REPO REF --clients N`.

Each client pulls like a container runtime does: the manifest by tag, then the config and every
layer, `--parallel` at a time (docker's default is 3), each client with a connection pool of its
own. Bodies are read and dropped; their sizes are checked against the manifest. All clients
start together; the result is one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field

import aiohttp

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
_READ_BUFFER = 1 << 20


@dataclass
class ClientResult:
    elapsed: float = 0.0
    bytes: int = 0
    blobs: int = 0
    first_byte: float | None = None  # seconds from start to the first body byte of any blob
    errors: list[str] = field(default_factory=list)


async def _blob(
    session: aiohttp.ClientSession,
    url: str,
    size: int,
    started: float,
    result: ClientResult,
    gate: asyncio.Semaphore,
) -> None:
    async with gate, session.get(url) as response:
        if response.status != 200:
            result.errors.append(f"{url}: HTTP {response.status}")
            return
        received = 0
        while chunk := await response.content.readany():
            if received == 0:
                now = time.monotonic() - started
                result.first_byte = (
                    now if result.first_byte is None else min(result.first_byte, now)
                )
            received += len(chunk)
    if received != size:
        result.errors.append(f"{url}: {received} bytes, manifest says {size}")
    result.bytes += received
    result.blobs += 1


async def pull_once(base: str, repo: str, ref: str, parallel: int, timeout: float) -> ClientResult:
    result = ClientResult()
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=parallel + 1)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        read_bufsize=_READ_BUFFER,
        auto_decompress=False,
    ) as session:
        try:
            async with session.get(
                f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT}
            ) as response:
                if response.status != 200:
                    result.errors.append(f"manifest: HTTP {response.status}")
                    return result
                manifest = json.loads(await response.read())
            descriptors = [manifest["config"], *manifest["layers"]]
            gate = asyncio.Semaphore(parallel)
            await asyncio.gather(
                *(
                    _blob(
                        session,
                        f"{base}/v2/{repo}/blobs/{d['digest']}",
                        int(d["size"]),
                        started,
                        result,
                        gate,
                    )
                    for d in descriptors
                )
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")
    result.elapsed = time.monotonic() - started
    return result


async def pull_many(
    base: str, repo: str, ref: str, clients: int, parallel: int, timeout: float
) -> dict[str, object]:
    started = time.monotonic()
    results = await asyncio.gather(
        *(pull_once(base, repo, ref, parallel, timeout) for _ in range(clients))
    )
    wall = time.monotonic() - started
    return {"wall": wall, "clients": [asdict(r) for r in results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base", help="registry base URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("repo", help="repository as the registry names it, e.g. up/bench/x")
    parser.add_argument("ref", help="tag or digest")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    report = asyncio.run(
        pull_many(args.base, args.repo, args.ref, args.clients, args.parallel, args.timeout)
    )
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()

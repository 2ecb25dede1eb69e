"""The memory a burst of downloads used goes back to the system when the last one ends, not
while another still runs."""

from __future__ import annotations

import json
import subprocess
import sys

_PROGRAM = """
import asyncio, json, os
from pullthrough.cache.fill import heap

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024

keep = []

def download_buffers():
    # What a download leaves in a writer thread's malloc arena: ~100 MiB of pieces, freed,
    # below one piece still in use.
    pieces = [os.urandom(100 << 10) for _ in range(1000)]
    keep.append(os.urandom(100 << 10))
    pieces.clear()

async def trimmed():
    await asyncio.sleep(0.05)
    while heap.Downloads._trimming is not None:
        await asyncio.sleep(0.01)

async def main():
    loop = asyncio.get_running_loop()
    seen = {"start": rss_mib()}
    heap.Downloads.started()
    heap.Downloads.started()
    await loop.run_in_executor(None, download_buffers)
    seen["freed"] = rss_mib()
    heap.Downloads.ended()  # one download still runs
    await trimmed()
    seen["one_left"] = rss_mib()
    heap.Downloads.ended()
    await trimmed()
    seen["none_left"] = rss_mib()
    print(json.dumps(seen))

asyncio.run(main())
"""


def test_freed_download_memory_is_returned_when_the_last_download_ends() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout)
    assert seen["freed"] >= seen["start"] + 60  # the allocator kept what was freed
    assert seen["one_left"] >= seen["start"] + 60  # not trimmed while a download runs
    assert seen["none_left"] <= seen["freed"] - 60  # given back after the last one

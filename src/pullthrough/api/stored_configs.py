"""Small stored blobs (image configs) read for listings: from local disk, or through the blob
driver; the admin API and the dashboard both use it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pullthrough.errors import DigestInvalid
from pullthrough.metadata.inventory import ConfigReader
from pullthrough.oci.digest import Digest
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.layout import blob_key

# Image configs are a few KiB; anything much larger is not worth reading for a listing.
_MAX_CONFIG_BYTES = 4 * 1024 * 1024


def stored_config_reader(driver: BlobDriver) -> ConfigReader:
    """Reads small stored blobs (image configs): from local disk, or through the driver."""

    async def read(digest: str) -> bytes | None:
        try:
            parsed = Digest.parse(digest)
        except DigestInvalid:
            return None
        key = blob_key(parsed.algorithm, parsed.hex)
        path = driver.local_path(key)
        if path is not None:
            return await asyncio.to_thread(_read_small, path)
        return await _read_small_object(driver, key)

    return read


async def _read_small_object(driver: BlobDriver, key: str) -> bytes | None:
    data = bytearray()
    try:
        async for chunk in driver.read(key, 0, _MAX_CONFIG_BYTES + 1):
            data += chunk
    except FileNotFoundError:
        return None
    return bytes(data) if len(data) <= _MAX_CONFIG_BYTES else None


def _read_small(path: Path) -> bytes | None:
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_CONFIG_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= _MAX_CONFIG_BYTES else None

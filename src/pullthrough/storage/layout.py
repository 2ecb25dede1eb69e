"""The one place that names what lies directly under the data directory.

    <data_dir>/
    ├── metadata.sqlite          SQLite metadata (when no database URL is configured)
    ├── secret.key               AES-GCM key of the upstream secret store (0600)
    ├── token.key                HS256 key signing client tokens (0600)
    ├── tmp/                     fills in progress (<random>.part) and lock files (<name>.lock);
    │                            emptied at start
    └── blobs/                   content-addressed, immutable once renamed into place
        └── sha256/
            └── ab/              first two hex digits, so no directory grows too large
                └── ab12…ef      the blob's bytes, exactly; the name is its digest's hex

Inside tmp/, the fill spool and the file locks (storage/locks.py) name their own files, and
`pullthrough serve` keeps its processes' metrics in tmp/metrics/ (telemetry/metrics.py); a blob's
key under blobs/ is `blob_key`, which the filesystem driver joins to `blob_root`. A blob file only
ever appears by an atomic rename of a verified, fsynced temp file, so a file under blobs/ is
always complete. Manifests live in the metadata database, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def blob_key(algorithm: str, hex_digest: str) -> str:
    """The storage key of a blob: `blobs/<algorithm>/<hex[:2]>/<hex>`."""
    return f"blobs/{algorithm}/{hex_digest[:2]}/{hex_digest}"


@dataclass(frozen=True, slots=True)
class DataLayout:
    root: Path

    @property
    def metadata_file(self) -> Path:
        return self.root / "metadata.sqlite"

    @property
    def secret_key_file(self) -> Path:
        return self.root / "secret.key"

    @property
    def token_key_file(self) -> Path:
        return self.root / "token.key"

    @property
    def temp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def blob_root(self) -> Path:
        return self.root

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.temp_dir.mkdir(exist_ok=True)
        (self.root / "blobs").mkdir(exist_ok=True)

"""Where a fill stands: one enum, and the record that tells other worker processes.

A fill goes RUNNING → VERIFIED → COMMITTED; it ends FAILED from RUNNING, or COMMIT_FAILED
from VERIFIED:

- RUNNING: bytes are arriving; readers get all but the last one.
- VERIFIED: every byte arrived and the digest matched; readers may have them all, while the
  durable commit (fsync, rename, metadata row) goes on.
- COMMITTED: the blob is in storage and in the metadata; the spool file is renamed into place
  (the filesystem) or, its bytes uploaded, deleted (object storage).
- FAILED: the bytes never verified (upstream failed, a wrong digest or size, the deadline);
  the fill's error says why, and every reader gets it short of the last byte.
- COMMIT_FAILED: the bytes verified but were not stored (or the process following the fill lost
  it after it verified): readers that are reading get every byte; nothing is stored, so the
  next pull fills the blob again.

The process that downloads a blob holds its fill lock (`storage/locks.py`) and publishes a
small record beside the spool file, so that processes following it know where the bytes are,
how many there will be, and how the fill ended:

    <data_dir>/tmp/
    ├── sha256-<hex>.lock          held by the process filling the blob
    ├── sha256-<hex>.fill          FillRecord: {"spool", "size", "repository", "state", "error…"}
    └── <hex16>-<random>.part      the bytes so far
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from pullthrough import errors
from pullthrough.errors import RegistryError, UpstreamUnavailable

# How often a follower looks at the spool file and the record again.
POLL_SECONDS = 0.01


class FillState(Enum):
    RUNNING = "running"
    VERIFIED = "verified"
    COMMITTED = "committed"
    FAILED = "failed"
    COMMIT_FAILED = "commit_failed"

    @property
    def bytes_verified(self) -> bool:
        """Readers may have every byte: the digest matched."""
        return self in (FillState.VERIFIED, FillState.COMMITTED, FillState.COMMIT_FAILED)

    @property
    def unstored(self) -> bool:
        """The fill ended without storing the blob."""
        return self in (FillState.FAILED, FillState.COMMIT_FAILED)

    def failing(self) -> FillState:
        """The state a fill in this state ends in when it fails now."""
        return FillState.COMMIT_FAILED if self.bytes_verified else FillState.FAILED


def record_path(spool_dir: Path, algorithm: str, hex_digest: str) -> Path:
    """The record file of the fill of one blob."""
    return spool_dir / f"{algorithm}-{hex_digest}.fill"


@dataclass(frozen=True, slots=True)
class FillRecord:
    """A fill as the process that downloads it publishes it; the state is stored by value."""

    spool: str
    size: int | None
    repository: str
    state: FillState = FillState.RUNNING
    error_type: str | None = None
    error_message: str | None = None
    error_headers: dict[str, str] = field(default_factory=dict)
    updated_at: float = 0.0

    @classmethod
    def of(
        cls,
        spool: str,
        size: int | None,
        repository: str,
        state: FillState,
        error: RegistryError | None,
    ) -> FillRecord:
        """The record of a fill that stands here: what its leader publishes."""
        return cls(
            spool=spool,
            size=size,
            repository=repository,
            state=state,
            error_type=cls.error_type_of(error) if error else None,
            error_message=error.message if error else None,
            error_headers=error.headers if error else {},
        )

    @staticmethod
    def error_type_of(error: RegistryError) -> str:
        """The public class in `pullthrough.errors` nearest to `error`'s own (which may be a
        private subclass, like the upstream client's 429)."""
        return next(c.__name__ for c in type(error).__mro__ if c.__module__ == errors.__name__)

    def error(self) -> RegistryError:
        error_class = getattr(errors, self.error_type or "", None)
        if not (isinstance(error_class, type) and issubclass(error_class, RegistryError)):
            error_class = UpstreamUnavailable
        return error_class(
            self.error_message or "the fill in another worker failed", headers=self.error_headers
        )

    def write(self, path: Path) -> None:
        temporary = path.with_suffix(".fill-new")
        fields = {**asdict(self), "state": self.state.value, "updated_at": time.time()}
        temporary.write_text(json.dumps(fields))
        os.replace(temporary, path)

    @classmethod
    def read(cls, path: Path) -> FillRecord | None:
        try:
            fields = json.loads(path.read_text())
            return cls(**{**fields, "state": FillState(fields.get("state", "running"))})
        except (FileNotFoundError, ValueError, TypeError, AttributeError):
            return None


def forget_record(path: Path, spool: str) -> None:
    """Remove the record at `path` if it is still the one of the fill spooling to `spool` (not a
    newer fill's)."""
    record = FillRecord.read(path)
    if record is not None and record.spool == spool:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

"""The one place that opens blob storage from the settings.

Today that is the filesystem under the data directory; another driver (S3) is chosen here and
nowhere else.
"""

from __future__ import annotations

from pullthrough.config import Settings
from pullthrough.storage.driver import BlobDriver
from pullthrough.storage.filesystem import FilesystemDriver
from pullthrough.storage.layout import DataLayout


def open_blob_storage(settings: Settings) -> BlobDriver:
    """The blob driver these settings name, its directories created."""
    layout = DataLayout(settings.data_dir.resolve())
    layout.create()
    return FilesystemDriver(layout.blob_root)

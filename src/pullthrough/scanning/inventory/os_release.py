"""`/etc/os-release` (or `/usr/lib/os-release`): which distribution and release an image is."""

from __future__ import annotations

import shlex

from pullthrough.scanning.model import Distro

PATHS = ("etc/os-release", "usr/lib/os-release")


def parse_os_release(text: str) -> Distro | None:
    """The distribution the file names; None when it has no `ID`."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, equals, raw = line.strip().partition("=")
        if not equals or key.startswith("#"):
            continue
        try:
            words = shlex.split(raw)
        except ValueError:
            words = [raw.strip("\"'")]
        values[key.strip()] = " ".join(words)
    distro_id = values.get("ID", "").lower()
    if not distro_id:
        return None
    return Distro(distro_id, values.get("VERSION_ID", ""), values.get("PRETTY_NAME", ""))

"""Alpine's apk database, `lib/apk/db/installed`: one stanza of `K:value` lines per package;
`o:` is the origin (the source package advisories name)."""

from __future__ import annotations

from pullthrough.scanning.inventory.records import PackageRecord

PATHS = ("lib/apk/db/installed", "usr/lib/apk/db/installed")


def parse_apk_installed(text: str) -> list[PackageRecord]:
    packages = []
    fields: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if line.strip():
            key, colon, value = line.partition(":")
            if colon and len(key) == 1 and key not in fields:
                fields[key] = value
            continue
        name, version = fields.get("P"), fields.get("V")
        if name and version:
            packages.append(
                PackageRecord(
                    name=name,
                    version=version,
                    arch=fields.get("A", ""),
                    source_name=fields.get("o") or name,
                    source_version=version,
                )
            )
        fields = {}
    return packages

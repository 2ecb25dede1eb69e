"""npm packages: `node_modules/<name>/package.json` and `node_modules/@scope/<name>/package.json`
at any depth (nested dependencies included); other package.json files are not packages."""

from __future__ import annotations

import json
import re

from pullthrough.scanning.inventory.records import PackageRecord

_PACKAGE_JSON = re.compile(r"(?:.*/)?node_modules/(?:@[^/]+/)?[^/@][^/]*/package\.json")


def is_npm_package(path: str) -> bool:
    return _PACKAGE_JSON.fullmatch(path) is not None


def parse_package_json(text: str) -> list[PackageRecord]:
    try:
        document = json.loads(text)
    except ValueError:
        return []
    if not isinstance(document, dict):
        return []
    name, version = document.get("name"), document.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return []
    return [PackageRecord(name=name, version=version)]

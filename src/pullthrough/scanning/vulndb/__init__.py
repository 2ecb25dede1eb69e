"""The local vulnerability database: OSV advisories imported from files and archives or synced
from OSV's per-ecosystem archives, kept in the metadata database, matched against inventories."""

from pullthrough.scanning.vulndb.archives import DEFAULT_URL
from pullthrough.scanning.vulndb.database import (
    ArchiveOutcome,
    EcosystemStatus,
    ImportReport,
    SyncReport,
    VulnDbStatus,
    VulnerabilityDatabase,
)

__all__ = [
    "DEFAULT_URL",
    "ArchiveOutcome",
    "EcosystemStatus",
    "ImportReport",
    "SyncReport",
    "VulnDbStatus",
    "VulnerabilityDatabase",
]

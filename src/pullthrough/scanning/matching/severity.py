"""An advisory's severity in ECR's words: from its CVSS vector's base score (the `cvss`
library: v3 when there is one, else v4, else v2), else from the word the record gives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cvss import CVSS2, CVSS3, CVSS4, CVSSError  # type: ignore[import-untyped]

from pullthrough.scanning.matching.osv import Severity

# The order vectors are preferred in: v3 is the score most tools and ECR show.
_CALCULATORS = (("CVSS_V3", CVSS3), ("CVSS_V4", CVSS4), ("CVSS_V2", CVSS2))

# Words distributions and GHSA use, in ECR's names.
_WORDS = {
    "critical": "CRITICAL",
    "high": "HIGH",
    "important": "HIGH",
    "moderate": "MEDIUM",
    "medium": "MEDIUM",
    "low": "LOW",
    "negligible": "INFORMATIONAL",
    "unimportant": "INFORMATIONAL",
    "informational": "INFORMATIONAL",
}


@dataclass(frozen=True, slots=True)
class Rating:
    severity: str  # one of scanning.model.SEVERITIES
    score: float | None
    vector: str | None


def from_score(score: float) -> str:
    if score >= 9.0:
        return "CRITICAL"
    if score >= 7.0:
        return "HIGH"
    if score >= 4.0:
        return "MEDIUM"
    if score > 0:
        return "LOW"
    return "INFORMATIONAL"


def rate(severities: Sequence[Severity], words: Sequence[str | None]) -> Rating:
    """The rating of the first vector that reads, in the preferred order; else the first of
    `words` (or a distribution's own severity entry) that names a level; else UNDEFINED."""
    for kind, calculator in _CALCULATORS:
        for entry in severities:
            if entry.type != kind:
                continue
            vector = entry.score.strip()
            if kind == "CVSS_V2":
                vector = vector.removeprefix("CVSS:2.0/")
            try:
                score = float(calculator(vector).base_score)
            except (CVSSError, ValueError, KeyError, IndexError):
                continue
            return Rating(from_score(score), score, entry.score.strip())
    named = [*words, *(e.score for e in severities if not e.type.startswith("CVSS_"))]
    for word in named:
        level = _WORDS.get((word or "").strip().lower())
        if level is not None:
            return Rating(level, None, None)
    return Rating("UNDEFINED", None, None)

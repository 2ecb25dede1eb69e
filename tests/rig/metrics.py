"""A scrape of a server's `/metrics`, parsed with prometheus_client's own parser."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """Every sample of one scrape: (sample name, labels) and value."""

    samples: tuple[tuple[str, dict[str, str], float], ...]
    families: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples = []
        families = set()
        for family in text_string_to_metric_families(text):
            families.add(family.name)
            for sample in family.samples:
                samples.append((sample.name, dict(sample.labels), float(sample.value)))
                families.add(sample.name)
        return cls(tuple(samples), frozenset(families))

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
        return sum(
            value
            for sample, have, value in self.samples
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {have[label] for sample, have, _ in self.samples if sample == name and label in have}


def scrape(url: str, **kwargs: object) -> Scrape:
    """GET `url` (a server's /metrics) and parse it; the response must be a 200."""
    response = httpx.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return Scrape.parse(response.text)

"""Lifecycle policies in Amazon ECR's JSON grammar, and which cached images they expire.

    {"rules": [{"rulePriority": 1, "description": "Expire untagged images older than 14 days",
                "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                              "countUnit": "days", "countNumber": 14},
                "action": {"type": "expire"}}]}

Evaluation follows ECR's documented rules (quoted where implemented). For a cache:

- `sinceImagePushed` counts from when the image was cached (`CachedImage.cached_at`), and
  `imageCountMoreThan` keeps the most recently cached images.
- `sinceImagePulled` counts from the last pull of the image or any of its platform manifests
  (`last_pulled_at`); an image never pulled since it was cached counts from `cached_at`, as ECR
  does ("If an image was never pulled, the image's pushed_at_time is used instead"). ECR only
  lets `sinceImagePulled` archive images; pullthrough has no archive, so it expires them.
- An image is a whole top-level manifest: an index expires together with its platform
  manifests, so nothing here looks at children.

The grammar and its validation live in `policy_rules`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pullthrough.lifecycle.policy_json import LifecyclePolicyError
from pullthrough.lifecycle.policy_rules import LifecycleRule, parse_rules
from pullthrough.metadata.images import CachedImage

__all__ = ["Expiry", "LifecyclePolicy", "LifecyclePolicyError", "LifecycleRule"]

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Expiry:
    """An image a policy expires, and why: `reason` reads like
    `rule 1 (untagged, sinceImagePushed > 14 days): cached 20.0 days ago`."""

    image: CachedImage
    rule_priority: int
    description: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """A validated lifecycle policy; `rules` are in rulePriority order."""

    rules: tuple[LifecycleRule, ...]

    @classmethod
    def parse(cls, document: str | bytes | Mapping[str, Any]) -> LifecyclePolicy:
        """A policy from its JSON text or decoded JSON; raises `LifecyclePolicyError` naming
        the rule and field at fault."""
        return cls(parse_rules(document))

    def to_json(self) -> dict[str, Any]:
        """The policy's normal form: rules in rulePriority order, `countUnit` only where it
        applies, `storageClass` (always "standard") left out. `parse` accepts it back."""
        return {"rules": [rule.to_json() for rule in self.rules]}

    def evaluate(self, images: Sequence[CachedImage], now: float) -> list[Expiry]:
        """The images this policy expires at time `now` (seconds, like the images' times).

        A policy applies to one repository at a time: images of several repositories are
        evaluated separately, repository by repository. The result is ordered by repository,
        then rule priority, then oldest cached first."""
        by_repository: dict[str, list[CachedImage]] = {}
        seen: set[tuple[str, str]] = set()
        for image in images:
            key = (image.repository, image.digest)
            if key in seen:
                raise ValueError(f"{image.repository}@{image.digest} is listed twice")
            seen.add(key)
            by_repository.setdefault(image.repository, []).append(image)
        expiries: list[Expiry] = []
        for repository in sorted(by_repository):
            expiries.extend(self._evaluate_repository(by_repository[repository], now))
        return expiries

    def _evaluate_repository(self, images: Sequence[CachedImage], now: float) -> list[Expiry]:
        # "All rules are evaluated at the same time, regardless of rule priority. After all
        # rules are evaluated, they are then applied based on rule priority."
        # "An image is expired [...] by exactly one or zero rules."
        # "An image that matches the tagging requirements of a rule cannot be expired [...] by
        # a rule with a lower priority."
        # "Rules can never mark images that are marked by higher priority rules, but can still
        # identify them as if they haven't been expired [...]."
        # So each rule marks from everything it selects (an `imageCountMoreThan` rule counts
        # images a higher-priority rule claimed, as ECR's "Filtering on all images" example B
        # shows), and a mark only expires an image no higher-priority rule selected.
        claimed: set[str] = set()
        expiries: list[Expiry] = []
        for rule in self.rules:
            selected = [image for image in images if rule.selects(image)]
            for image, why in _marks(rule, selected, now):
                if image.digest not in claimed:
                    reason = f"{rule.summary}: {why}"
                    expiries.append(Expiry(image, rule.rule_priority, rule.description, reason))
            claimed.update(image.digest for image in selected)
        return expiries


def _marks(
    rule: LifecycleRule, selected: Sequence[CachedImage], now: float
) -> Iterator[tuple[CachedImage, str]]:
    """The images among `selected` that `rule`'s count condition marks, oldest first, each with
    why."""
    # "Expiration is always ordered by pushed_at_time and always expires older images before
    # newer ones." Ties are broken by digest so that results do not depend on input order.
    oldest_first = sorted(selected, key=lambda image: (image.cached_at, image.digest))
    if rule.count_type == "imageCountMoreThan":
        # "With countType = imageCountMoreThan, images are sorted from youngest to oldest based
        # on pushed_at_time and then all images greater than the specified count are expired."
        excess = len(oldest_first) - rule.count_number
        noun = "image" if rule.count_number == 1 else "images"
        for image in oldest_first[: max(excess, 0)]:
            yield (
                image,
                (
                    f"cached {_days(now - image.cached_at)} ago; the rule keeps the "
                    f"{rule.count_number} most recently cached {noun} of the "
                    f"{len(oldest_first)} it selects"
                ),
            )
        return
    limit = rule.count_number * DAY
    for image in oldest_first:
        if rule.count_type == "sinceImagePushed":
            # "With countType = sinceImagePushed, all images whose pushed_at_time is older than
            # the specified number of days based on countNumber are expired."
            age = now - image.cached_at
            why = f"cached {_days(age)} ago"
        elif image.last_pulled_at is not None:
            # "With countType = sinceImagePulled, all images whose last_recorded_pulltime is
            # older than the specified number of days based on countNumber are archived."
            age = now - image.last_pulled_at
            why = f"last pulled {_days(age)} ago"
        else:
            # "If an image was never pulled, the image's pushed_at_time is used instead of the
            # last_recorded_pulltime."
            age = now - image.cached_at
            why = f"never pulled; cached {_days(age)} ago"
        if age > limit:
            yield image, why


def _days(seconds: float) -> str:
    return f"{seconds / DAY:.1f} days"

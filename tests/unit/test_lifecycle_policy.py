"""Lifecycle policies expire what ECR's documentation says they expire.

Each test is one of the examples in the Amazon ECR User Guide ("Examples of lifecycle policies
in Amazon ECR"), with its repository contents turned into cached images whose times are
relative to a fixed `NOW`, and asserts exactly which images expire, by which rule, and why.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest

from pullthrough.lifecycle.lifecycle_policy import Expiry, LifecyclePolicy
from pullthrough.metadata.images import CachedImage

NOW = 1_750_000_000.0
DAY = 86_400.0
HOUR = 3_600.0
REPO = "docker-hub/library/app"


# Digests are derived from names; this remembers the name behind each, for assertions.
_NAMES: dict[str, str] = {}


def digest(name: str) -> str:
    value = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
    _NAMES[value] = name
    return value


def image(
    name: str,
    *tags: str,
    cached: float,
    pulled: float | None = None,
    repository: str = REPO,
    children: tuple[str, ...] = (),
) -> CachedImage:
    """Image `name`, cached `cached` seconds before NOW and last pulled `pulled` seconds
    before NOW (None: never pulled since it was cached)."""
    return CachedImage(
        repository=repository,
        digest=digest(name),
        tags=tags,
        cached_at=NOW - cached,
        last_pulled_at=None if pulled is None else NOW - pulled,
        children=children,
    )


def rule(priority: int, selection: dict[str, Any], description: str | None = None) -> Any:
    body: dict[str, Any] = {"rulePriority": priority}
    if description is not None:
        body["description"] = description
    body["selection"] = selection
    body["action"] = {"type": "expire"}
    return body


def named(**images: CachedImage) -> list[CachedImage]:
    """The images, in keyword order (the keywords repeat the names, for the reader)."""
    assert all(_NAMES[i.digest] == name for name, i in images.items())
    return list(images.values())


def by_name(expiries: list[Expiry]) -> dict[str, Expiry]:
    return {_NAMES[e.image.digest]: e for e in expiries}


def expired(policy: LifecyclePolicy, images: list[CachedImage]) -> dict[str, int]:
    """Name of each expired image -> the rulePriority that expired it."""
    return {name: e.rule_priority for name, e in by_name(policy.evaluate(images, NOW)).items()}


# "Filtering on image age": the user guide's original example (untagged images) and its current
# one (tags matching prod*).


def test_expires_untagged_images_older_than_14_days() -> None:
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(
                    1,
                    {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 14,
                    },
                    "Expire images older than 14 days",
                )
            ]
        }
    )
    images = named(
        old=image("old", cached=20 * DAY),
        fourteen=image("fourteen", cached=14 * DAY),  # exactly 14 days: not older
        older=image("older", cached=14 * DAY + 1),
        young=image("young", cached=13 * DAY),
        old_tagged=image("old_tagged", "1.27", cached=90 * DAY),
    )

    expiries = by_name(policy.evaluate(images, NOW))

    assert sorted(expiries) == ["old", "older"]
    old = expiries["old"]
    assert old.image == images[0]
    assert old.rule_priority == 1
    assert old.description == "Expire images older than 14 days"
    assert old.reason == "rule 1 (untagged, sinceImagePushed > 14 days): cached 20.0 days ago"


def test_expires_images_tagged_prod_star_older_than_14_days() -> None:
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(
                    1,
                    {
                        "tagStatus": "tagged",
                        "tagPatternList": ["prod*"],
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 14,
                    },
                    "Expire images older than 14 days",
                )
            ]
        }
    )
    images = named(
        prod=image("prod", "prod", cached=30 * DAY),
        team=image("team", "production-team1", cached=15 * DAY),
        fresh=image("fresh", "prod2", cached=2 * DAY),
        beta=image("beta", "beta-1", cached=30 * DAY),
        preprod=image("preprod", "preprod", cached=30 * DAY),  # prod* is anchored at the start
        untagged=image("untagged", cached=30 * DAY),
    )

    assert expired(policy, images) == {"prod": 1, "team": 1}
    reasons = {e.reason for e in policy.evaluate(images, NOW)}
    assert reasons == {
        'rule 1 (tagged matching "prod*", sinceImagePushed > 14 days): cached 30.0 days ago',
        'rule 1 (tagged matching "prod*", sinceImagePushed > 14 days): cached 15.0 days ago',
    }


# "Filtering on image count"


def test_keeps_only_one_untagged_image() -> None:
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(
                    1,
                    {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
                    "Keep only one untagged image, expire all others",
                )
            ]
        }
    )
    images = named(
        a=image("a", cached=3 * DAY, pulled=1 * HOUR),  # pulls don't count for imageCountMoreThan
        b=image("b", cached=2 * DAY),
        c=image("c", cached=1 * DAY),
        tagged=image("tagged", "latest", cached=9 * DAY),
    )

    expiries = policy.evaluate(images, NOW)

    assert [_NAMES[e.image.digest] for e in expiries] == ["a", "b"]  # oldest first
    assert expiries[0].reason == (
        "rule 1 (untagged, imageCountMoreThan 1): cached 3.0 days ago; the rule keeps the "
        "1 most recently cached image of the 3 it selects"
    )


# "Filtering on multiple rules": A/B images; the current guide uses tagPatternList, the
# original tagPrefixList. Both must come out as documented.

MULTI_RULE_IMAGES = {
    "A": (("beta-1", "prod-1"), 10),
    "B": (("beta-2", "prod-2"), 9),
    "C": (("beta-3",), 8),
}


def multi_rule_repository() -> list[CachedImage]:
    return named(
        **{
            name: image(name, *tags, cached=days * DAY)
            for name, (tags, days) in MULTI_RULE_IMAGES.items()
        }
    )


def tagged(kind: str, tag: str) -> dict[str, Any]:
    values = [tag + "*"] if kind == "tagPatternList" else [tag]
    return {"tagStatus": "tagged", kind: values}


@pytest.mark.parametrize("kind", ["tagPatternList", "tagPrefixList"])
def test_multiple_rules_example_a_prod_first(kind: str) -> None:
    # "Rule 1 [...] marks Image A for expiration. Rule 2 [...] marks both Image A and Image B
    # for expiration. However, Image A has already been seen by Rule 1 and if Image B were
    # expired it would violate Rule 1 and thus is skipped. Result: Image A is expired."
    count = {"countType": "imageCountMoreThan", "countNumber": 1}
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(1, tagged(kind, "prod") | count, "Rule 1"),
                rule(2, tagged(kind, "beta") | count, "Rule 2"),
            ]
        }
    )
    images = multi_rule_repository()

    assert expired(policy, images) == {"A": 1}
    (expiry,) = policy.evaluate(images, NOW)
    assert expiry.description == "Rule 1"
    assert expiry.reason.startswith("rule 1 (tagged ")
    assert expiry.reason.endswith(
        "imageCountMoreThan 1): cached 10.0 days ago; the rule keeps the 1 most recently "
        "cached image of the 2 it selects"
    )


@pytest.mark.parametrize("kind", ["tagPatternList", "tagPrefixList"])
def test_multiple_rules_example_b_beta_first(kind: str) -> None:
    # "Rule 1 [...] sees all three images and would mark Image A and Image B for expiration.
    # Rule 2 [...] would see no images because all available images were already seen by
    # Rule 1 [...]. Result: Images A and B are expired."
    count = {"countType": "imageCountMoreThan", "countNumber": 1}
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(1, tagged(kind, "beta") | count, "Rule 1"),
                rule(2, tagged(kind, "prod") | count, "Rule 2"),
            ]
        }
    )

    assert expired(policy, multi_rule_repository()) == {"A": 1, "B": 1}


# "Filtering on multiple tags in a single rule"


@pytest.mark.parametrize(
    "tags", [{"tagPatternList": ["alpha*", "beta*"]}, {"tagPrefixList": ["alpha", "beta"]}]
)
def test_multiple_tags_in_one_rule_must_all_match(tags: dict[str, list[str]]) -> None:
    # "When multiple tag patterns are specified on a single rule, images must match all listed
    # tag patterns. [...] It sees images C and F. It should mark images that are older than
    # five days, which would be Image C."
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(
                    1,
                    {"tagStatus": "tagged"}
                    | tags
                    | {"countType": "sinceImagePushed", "countNumber": 5, "countUnit": "days"},
                )
            ]
        }
    )
    images = named(
        A=image("A", "alpha-1", cached=12 * DAY),
        B=image("B", "beta-1", cached=11 * DAY),
        C=image("C", "alpha-2", "beta-2", cached=10 * DAY),
        D=image("D", "alpha-3", cached=4 * DAY),
        E=image("E", "beta-3", cached=3 * DAY),
        F=image("F", "alpha-4", "beta-4", cached=2 * DAY),
    )

    assert expired(policy, images) == {"C": 1}


@pytest.mark.parametrize(
    "tags", [{"tagPatternList": ["alpha*", "beta*"]}, {"tagPrefixList": ["alpha", "beta"]}]
)
def test_tags_are_not_exclusive(tags: dict[str, list[str]]) -> None:
    # "It sees all images. [...] It marks image A and B for expiration."
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(
                    1,
                    {"tagStatus": "tagged"}
                    | tags
                    | {"countType": "imageCountMoreThan", "countNumber": 1},
                )
            ]
        }
    )
    images = named(
        A=image("A", "alpha-1", "beta-1", "gamma-1", cached=10 * DAY),
        B=image("B", "alpha-2", "beta-2", cached=9 * DAY),
        C=image("C", "alpha-3", "beta-3", "gamma-2", cached=8 * DAY),
    )

    assert expired(policy, images) == {"A": 1, "B": 1}


# "Filtering on all images"


def test_any_rule_keeps_only_the_newest_image() -> None:
    # "It should expire all images other than the newest one. It marks images A, B, and C."
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(1, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})
            ]
        }
    )
    images = named(
        A=image("A", "alpha-1", cached=4 * DAY),
        B=image("B", "beta-1", cached=3 * DAY),
        C=image("C", cached=2 * DAY),
        D=image("D", "alpha-2", cached=1 * DAY),
    )

    assert expired(policy, images) == {"A": 1, "B": 1, "C": 1}


def test_all_rule_types_in_one_policy() -> None:
    # "Rule 3 [...] should keep the newest image and mark the rest for expiration. However, it
    # can't mark images A, B, C, or E because they were identified by higher priority rules.
    # It marks image D for expiration. Result: Images A, B, and D are expired."
    # The guide has D and E both "Pushed: 1 day ago" and keeps E; here D is cached an hour
    # before E so that "the newest image" is E without relying on a tie.
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(
                    1,
                    {
                        "tagStatus": "tagged",
                        "tagPatternList": ["alpha*"],
                        "countType": "imageCountMoreThan",
                        "countNumber": 1,
                    },
                    "Rule 1",
                ),
                rule(
                    2,
                    {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 1,
                    },
                    "Rule 2",
                ),
                rule(
                    3,
                    {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
                    "Rule 3",
                ),
            ]
        }
    )
    images = named(
        A=image("A", "alpha-1", "beta-1", cached=4 * DAY),
        B=image("B", cached=3 * DAY),
        C=image("C", "alpha-2", cached=2 * DAY),
        D=image("D", "git hash", cached=1 * DAY + HOUR),
        E=image("E", cached=1 * DAY),
    )

    expiries = by_name(policy.evaluate(images, NOW))

    assert {name: e.rule_priority for name, e in expiries.items()} == {"A": 1, "B": 2, "D": 3}
    assert (
        expiries["B"].reason == "rule 2 (untagged, sinceImagePushed > 1 day): cached 3.0 days ago"
    )
    assert expiries["D"].reason == (
        "rule 3 (any, imageCountMoreThan 1): cached 1.0 days ago; the rule keeps the 1 most "
        "recently cached image of the 5 it selects"
    )
    assert expiries["D"].description == "Rule 3"


def test_images_tagged_prod_are_kept_and_the_others_expire() -> None:
    # "An image that matches the tagging requirements of a rule cannot be expired [...] by a
    # rule with a lower priority": a keep-everything rule for prod protects old prod images
    # from the catch-all rule after it.
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(
                    1,
                    {
                        "tagStatus": "tagged",
                        "tagPrefixList": ["prod"],
                        "countType": "imageCountMoreThan",
                        "countNumber": 9999,
                    },
                    "Keep prod images",
                ),
                rule(
                    2,
                    {
                        "tagStatus": "any",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 7,
                    },
                    "Expire everything else after a week",
                ),
            ]
        }
    )
    images = named(
        prod_old=image("prod_old", "prod-2023", cached=400 * DAY),
        prod_new=image("prod_new", "production", cached=1 * DAY),
        prod_and_beta=image("prod_and_beta", "beta-7", "prod-7", cached=60 * DAY),
        beta_old=image("beta_old", "beta-1", cached=30 * DAY),
        untagged_old=image("untagged_old", cached=8 * DAY),
        beta_new=image("beta_new", "beta-9", cached=2 * DAY),
    )

    expiries = by_name(policy.evaluate(images, NOW))

    assert {name: e.rule_priority for name, e in expiries.items()} == {
        "beta_old": 2,
        "untagged_old": 2,
    }
    assert expiries["untagged_old"].reason == (
        "rule 2 (any, sinceImagePushed > 7 days): cached 8.0 days ago"
    )
    assert expiries["beta_old"].description == "Expire everything else after a week"


# "Filtering on last pulled time" (ECR archives with sinceImagePulled; a cache expires)


def test_expires_images_not_pulled_for_90_days() -> None:
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(
                    1,
                    {
                        "tagStatus": "any",
                        "countType": "sinceImagePulled",
                        "countUnit": "days",
                        "countNumber": 90,
                    },
                    "Expire images not pulled in 90 days",
                )
            ]
        }
    )
    images = named(
        # Cached long ago but still pulled: kept.
        busy=image("busy", "1.27", cached=400 * DAY, pulled=2 * DAY),
        idle=image("idle", "1.25", cached=400 * DAY, pulled=91 * DAY),
        # Never pulled since it was cached: counts from when it was cached.
        never_old=image("never_old", "1.24", cached=120 * DAY),
        never_new=image("never_new", "1.28", cached=10 * DAY),
        # A multi-arch index: a pull of any platform is recorded as the image's last pull.
        index_pulled=image(
            "index_pulled",
            "multi",
            cached=300 * DAY,
            pulled=1 * DAY,
            children=(digest("amd64"), digest("arm64")),
        ),
        index_idle=image(
            "index_idle",
            cached=300 * DAY,
            pulled=200 * DAY,
            children=(digest("amd64-old"), digest("arm64-old")),
        ),
    )

    expiries = by_name(policy.evaluate(images, NOW))

    assert sorted(expiries) == ["idle", "index_idle", "never_old"]
    assert expiries["idle"].reason == (
        "rule 1 (any, sinceImagePulled > 90 days): last pulled 91.0 days ago"
    )
    assert expiries["never_old"].reason == (
        "rule 1 (any, sinceImagePulled > 90 days): never pulled; cached 120.0 days ago"
    )
    # The index and its platform manifests are one image: they expire together.
    assert expiries["index_idle"].image.children == (digest("amd64-old"), digest("arm64-old"))


def test_pull_rule_protects_recently_pulled_tags_from_a_count_rule() -> None:
    # Rules mix: recently pulled release tags (matching rule 1's tags) stay even though the
    # catch-all count rule would drop them.
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(
                    1,
                    {
                        "tagStatus": "tagged",
                        "tagPatternList": ["v*"],
                        "countType": "sinceImagePulled",
                        "countUnit": "days",
                        "countNumber": 30,
                    },
                ),
                rule(2, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}),
            ]
        }
    )
    images = named(
        v1=image("v1", "v1.0", cached=100 * DAY, pulled=1 * DAY),
        v2=image("v2", "v2.0", cached=50 * DAY, pulled=40 * DAY),
        dev_old=image("dev_old", "dev", cached=20 * DAY),
        dev_new=image("dev_new", "dev-2", cached=1 * DAY),
    )

    assert expired(policy, images) == {"v2": 1, "dev_old": 2}


# Tag matching


@pytest.mark.parametrize(
    ("selection", "tag", "selected"),
    [
        ({"tagPatternList": ["prod*"]}, "prod", True),
        ({"tagPatternList": ["prod*"]}, "production-team1", True),
        ({"tagPatternList": ["prod*"]}, "preprod", False),
        ({"tagPatternList": ["*prod*"]}, "repo-production", True),
        ({"tagPatternList": ["*prod*"]}, "prod-team", True),
        ({"tagPatternList": ["prod"]}, "prod", True),
        ({"tagPatternList": ["prod"]}, "prod1", False),  # no wildcard: the whole tag
        ({"tagPatternList": ["v*.*.*"]}, "v1.27.3", True),
        ({"tagPatternList": ["v*.*.*"]}, "v1.27", False),
        ({"tagPatternList": ["*test*1*2*3"]}, "a-test-1-2-3", True),
        ({"tagPatternList": ["v1.?"]}, "v1.2", False),  # only * is special
        ({"tagPatternList": ["v1.?"]}, "v1.?", True),
        ({"tagPrefixList": ["prod"]}, "production", True),
        ({"tagPrefixList": ["prod"]}, "preprod", False),
        ({"tagPrefixList": ["prod*"]}, "prod1", False),  # a prefix has no wildcards
    ],
)
def test_tag_matching(selection: dict[str, list[str]], tag: str, selected: bool) -> None:
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(
                    1,
                    {"tagStatus": "tagged"}
                    | selection
                    | {"countType": "imageCountMoreThan", "countNumber": 1},
                )
            ]
        }
    )
    assert policy.rules[0].selects(image("x", "other", tag, cached=DAY)) is selected


# Results


def test_each_repository_is_evaluated_on_its_own() -> None:
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(1, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})
            ]
        }
    )
    images = named(
        nginx_old=image("nginx_old", "1.26", cached=3 * DAY, repository="hub/library/nginx"),
        redis_old=image("redis_old", "7.0", cached=5 * DAY, repository="hub/library/redis"),
        nginx_new=image("nginx_new", "1.27", cached=1 * DAY, repository="hub/library/nginx"),
        redis_new=image("redis_new", "7.2", cached=2 * DAY, repository="hub/library/redis"),
    )

    expiries = policy.evaluate(images, NOW)

    assert [_NAMES[e.image.digest] for e in expiries] == ["nginx_old", "redis_old"]


def test_results_do_not_depend_on_input_order() -> None:
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(
                    1,
                    {
                        "tagStatus": "tagged",
                        "tagPrefixList": ["v"],
                        "countType": "imageCountMoreThan",
                        "countNumber": 2,
                    },
                ),
                rule(2, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2}),
            ]
        }
    )
    # Three images share each cache time, so which of the newest three rule 2 keeps comes down
    # to the tie-break: by digest, never by position in the input.
    images = [
        image(f"i{n}", *(["v" + str(n)] if n % 2 else []), cached=(n // 3) * DAY) for n in range(12)
    ]
    expected = policy.evaluate(images, NOW)
    assert len(expected) in (8, 9)

    for seed in range(5):
        shuffled = images[:]
        random.Random(seed).shuffle(shuffled)
        assert policy.evaluate(shuffled, NOW) == expected
    assert policy.evaluate(images[::-1], NOW) == expected


def test_an_image_listed_twice_is_a_caller_bug() -> None:
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(1, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})
            ]
        }
    )
    one = image("one", cached=DAY)
    with pytest.raises(ValueError, match="listed twice"):
        policy.evaluate([one, one], NOW)


def test_no_images_nothing_expires() -> None:
    policy = LifecyclePolicy.parse(
        {
            "rules": [
                rule(1, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})
            ]
        }
    )
    assert policy.evaluate([], NOW) == []

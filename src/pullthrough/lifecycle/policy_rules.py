"""One lifecycle rule in ECR's JSON grammar: parsing it with ECR's validation (errors name the
rule and the field), its normal JSON form, and which images its tag requirements select.

Quotations are from the Amazon ECR User Guide, "Lifecycle policy properties in Amazon ECR" and
"Automate the cleanup of images by using lifecycle policies" (evaluation rules).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

from pullthrough.jsondoc import json_type
from pullthrough.lifecycle.policy_json import (
    LifecyclePolicyError,
    RuleAt,
    is_int,
    json_object,
    json_value,
    known_keys,
    load_json,
)
from pullthrough.metadata.images import CachedImage

TagStatus = Literal["tagged", "untagged", "any"]
CountType = Literal["imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"]

TAG_STATUSES: tuple[TagStatus, ...] = get_args(TagStatus)
COUNT_TYPES: tuple[CountType, ...] = get_args(CountType)
SINCE_COUNT_TYPES: tuple[CountType, ...] = ("sinceImagePushed", "sinceImagePulled")

# ECR service quota: "Rules per lifecycle policy: 50".
MAX_RULES = 50
# "There is a maximum limit of four wildcards (*) per string."
MAX_WILDCARDS = 4

_POLICY_KEYS = ("rules",)
_RULE_KEYS = ("rulePriority", "description", "selection", "action")
_SELECTION_KEYS = (
    "tagStatus",
    "tagPatternList",
    "tagPrefixList",
    "storageClass",
    "countType",
    "countUnit",
    "countNumber",
)
_ACTION_KEYS = ("type",)
_NO_ARCHIVE = "pullthrough has no archive storage class"
_T = TypeVar("_T", bound=str)


@dataclass(frozen=True, slots=True)
class LifecycleRule:
    """A validated rule. Exactly one of `tag_prefixes` / `tag_patterns` is non-empty when
    `tag_status` is "tagged"; both are empty otherwise. `count_number` is days for the
    `since*` count types (whose `countUnit` is always "days") and images for
    `imageCountMoreThan`."""

    rule_priority: int
    description: str | None
    tag_status: TagStatus
    tag_prefixes: tuple[str, ...]
    tag_patterns: tuple[str, ...]
    count_type: CountType
    count_number: int

    def selects(self, image: CachedImage) -> bool:
        """Whether the image meets this rule's tagging requirements (age and count aside)."""
        if self.tag_status == "any":
            return True
        if self.tag_status == "untagged":
            return not image.tags
        # "An image is successfully matched if all of the tags in the tagPatternList or
        # tagPrefixList value are matched against any of the image's tags."
        if self.tag_prefixes:
            return all(
                any(tag.startswith(prefix) for tag in image.tags) for prefix in self.tag_prefixes
            )
        return all(
            any(_wildcard(pattern).fullmatch(tag) for tag in image.tags)
            for pattern in self.tag_patterns
        )

    @property
    def summary(self) -> str:
        """What the rule selects and its condition, for reasons: `rule 1 (untagged,
        sinceImagePushed > 14 days)`."""
        if self.tag_prefixes:
            noun = "prefix" if len(self.tag_prefixes) == 1 else "prefixes"
            selection = f"tagged with {noun} {_and(self.tag_prefixes)}"
        elif self.tag_patterns:
            selection = f"tagged matching {_and(self.tag_patterns)}"
        else:
            selection = self.tag_status
        if self.count_type == "imageCountMoreThan":
            condition = f"imageCountMoreThan {self.count_number}"
        else:
            unit = "day" if self.count_number == 1 else "days"
            condition = f"{self.count_type} > {self.count_number} {unit}"
        return f"rule {self.rule_priority} ({selection}, {condition})"

    def to_json(self) -> dict[str, Any]:
        selection: dict[str, Any] = {"tagStatus": self.tag_status}
        if self.tag_prefixes:
            selection["tagPrefixList"] = list(self.tag_prefixes)
        if self.tag_patterns:
            selection["tagPatternList"] = list(self.tag_patterns)
        selection["countType"] = self.count_type
        if self.count_type in SINCE_COUNT_TYPES:
            selection["countUnit"] = "days"
        selection["countNumber"] = self.count_number
        rule: dict[str, Any] = {"rulePriority": self.rule_priority}
        if self.description is not None:
            rule["description"] = self.description
        rule["selection"] = selection
        rule["action"] = {"type": "expire"}
        return rule


def parse_rules(document: str | bytes | Mapping[str, Any]) -> tuple[LifecycleRule, ...]:
    """The rules of a lifecycle policy document, in rulePriority order."""
    if isinstance(document, str | bytes):
        document = load_json(document)
    policy = json_object(document, "the lifecycle policy", None, field_prefix="")
    known_keys(policy, _POLICY_KEYS, "the lifecycle policy", None, field_prefix="")
    if "rules" not in policy:
        raise LifecyclePolicyError(
            'the lifecycle policy has no "rules": give a list of one or more rules', field="rules"
        )
    raw_rules = policy["rules"]
    if not isinstance(raw_rules, list):
        raise LifecyclePolicyError(
            f"rules must be a list of rules, not {json_type(raw_rules)}", field="rules"
        )
    if not raw_rules:
        raise LifecyclePolicyError(
            "rules is empty: a policy needs at least one rule", field="rules"
        )
    if len(raw_rules) > MAX_RULES:
        raise LifecyclePolicyError(
            f"rules has {len(raw_rules)} rules; ECR allows at most {MAX_RULES} per policy",
            field="rules",
        )
    rules = [_parse_rule(index, raw) for index, raw in enumerate(raw_rules)]
    _check_across_rules(rules)
    return tuple(sorted(rules, key=lambda rule: rule.rule_priority))


def _parse_rule(index: int, raw: Any) -> LifecycleRule:
    if not isinstance(raw, Mapping):
        raise LifecyclePolicyError(f"rules[{index}] must be a JSON object, not {json_type(raw)}")
    where = RuleAt(index)
    rule = json_object(raw, "the rule", where, field_prefix="")
    if "rulePriority" not in rule:
        raise where.error("rulePriority", "is required: give each rule a unique integer, 1 or more")
    raw_priority = rule["rulePriority"]
    if not is_int(raw_priority) or raw_priority < 1:
        raise where.error(
            "rulePriority", f"must be an integer, 1 or more; got {json_value(raw_priority)}"
        )
    priority: int = raw_priority
    where = RuleAt(index, priority)
    known_keys(rule, _RULE_KEYS, "the rule", where, field_prefix="")

    description = rule.get("description")
    if "description" in rule and not isinstance(description, str):
        raise where.error("description", f"must be a string, not {json_type(description)}")

    for key in ("selection", "action"):
        if key not in rule:
            raise where.error(key, "is required")
    _parse_action(rule["action"], where)
    return _parse_selection(rule["selection"], where, priority, description)


def _parse_action(raw: Any, where: RuleAt) -> None:
    action = json_object(raw, "action", where, field_prefix="action.")
    known_keys(action, _ACTION_KEYS, "action", where, field_prefix="action.")
    if "type" not in action:
        raise where.error("action.type", 'is required: the supported value is "expire"')
    kind = action["type"]
    if kind == "transition":
        raise where.error(
            "action.type", f'"transition" is not supported: {_NO_ARCHIVE}; use "expire"'
        )
    if kind != "expire":
        raise where.error("action.type", f'must be "expire", not {json_value(kind)}')


def _parse_selection(
    raw: Any, where: RuleAt, priority: int, description: str | None
) -> LifecycleRule:
    selection = json_object(raw, "selection", where, field_prefix="selection.")
    known_keys(selection, _SELECTION_KEYS, "selection", where, field_prefix="selection.")

    tag_status = _enum(selection, "tagStatus", TAG_STATUSES, where)
    prefixes = _tag_list(selection, "tagPrefixList", where)
    patterns = _tag_list(selection, "tagPatternList", where)
    # "If you specify tagged, then you must also specify a tagPrefixList value or a
    # tagPatternList value. If you specify untagged, then you must omit both tagPrefixList and
    # tagPatternList." and "The tagPatternList or tagPrefixList parameters may only used if
    # the tagStatus is tagged." (so `any` omits them too).
    if tag_status == "tagged":
        if prefixes is None and patterns is None:
            raise where.error(
                "selection.tagPrefixList",
                'is required when tagStatus is "tagged" (or give tagPatternList)',
            )
        # "A lifecycle policy rule may specify either tagPatternList or tagPrefixList, but
        # not both."
        if prefixes is not None and patterns is not None:
            raise where.error(
                "selection.tagPatternList",
                "cannot be given together with tagPrefixList: a rule uses one or the other",
            )
    else:
        for key, given in (("tagPrefixList", prefixes), ("tagPatternList", patterns)):
            if given is not None:
                raise where.error(
                    f"selection.{key}",
                    f'must be omitted when tagStatus is "{tag_status}"; '
                    'it is only used with "tagged"',
                )
    for pattern in patterns or ():
        wildcards = pattern.count("*")
        if wildcards > MAX_WILDCARDS:
            raise where.error(
                "selection.tagPatternList",
                f"has {json.dumps(pattern)} with {wildcards} wildcards (*); "
                f"ECR allows at most {MAX_WILDCARDS} per pattern",
            )

    # "When using a countType of imageCountMoreThan, sinceImagePushed, or sinceImagePulled,
    # the only supported value is standard. [...] If you omit this, the value of standard will
    # be used."
    if "storageClass" in selection and selection["storageClass"] != "standard":
        shown = json_value(selection["storageClass"])
        raise where.error(
            "selection.storageClass",
            f'must be "standard" (or omitted), not {shown}: {_NO_ARCHIVE}',
        )

    if selection.get("countType") == "sinceImageTransitioned":
        raise where.error(
            "selection.countType",
            f'"sinceImageTransitioned" is not supported: {_NO_ARCHIVE}; '
            f"use one of {_or(COUNT_TYPES)}",
        )
    count_type = _enum(selection, "countType", COUNT_TYPES, where)
    # countUnit is "Required: yes, only if countType is set to sinceImagePushed,
    # sinceImagePulled [...]. This should only be specified when countType is [one of those];
    # an error will occur if you specify a count unit when countType is any other value."
    if count_type in SINCE_COUNT_TYPES:
        if "countUnit" not in selection:
            raise where.error(
                "selection.countUnit", f'is required when countType is "{count_type}" (use "days")'
            )
        if selection["countUnit"] != "days":
            raise where.error(
                "selection.countUnit",
                f'must be "days", not {json_value(selection["countUnit"])}',
            )
    elif "countUnit" in selection:
        raise where.error(
            "selection.countUnit",
            f'must be omitted when countType is "{count_type}"; '
            "it is only used with sinceImagePushed and sinceImagePulled",
        )
    # "Acceptable values are positive integers (0 is not an accepted value)."
    if "countNumber" not in selection:
        raise where.error("selection.countNumber", "is required: give a positive integer")
    count_number = selection["countNumber"]
    if not is_int(count_number) or count_number < 1:
        raise where.error(
            "selection.countNumber",
            f"must be a positive integer (0 is not accepted), not {json_value(count_number)}",
        )

    return LifecycleRule(
        rule_priority=priority,
        description=description,
        tag_status=tag_status,
        tag_prefixes=prefixes or (),
        tag_patterns=patterns or (),
        count_type=count_type,
        count_number=count_number,
    )


def _check_across_rules(rules: Sequence[LifecycleRule]) -> None:
    """Constraints on the set of rules. A clash (same priority, a second untagged rule, the
    same tag set) is reported on the later rule in document order; a misplaced "any" rule on
    itself."""
    first_with: dict[int, int] = {}
    for index, rule in enumerate(rules):
        where = RuleAt(index, rule.rule_priority)
        # "When you add rules to a lifecycle policy, you must give them each a unique value for
        # rulePriority."
        if rule.rule_priority in first_with:
            other = first_with[rule.rule_priority]
            raise where.error(
                "rulePriority",
                f"{rule.rule_priority} is already used by rules[{other}]: "
                "each rule needs a unique rulePriority",
            )
        first_with[rule.rule_priority] = index

    highest = max(rule.rule_priority for rule in rules)
    untagged: int | None = None
    prefix_sets: dict[frozenset[str], int] = {}
    pattern_sets: dict[frozenset[str], int] = {}
    for index, rule in enumerate(rules):
        where = RuleAt(index, rule.rule_priority)
        # "A rule with a tagStatus value of any must have the highest value for rulePriority
        # and be evaluated last." (Which also allows only one such rule.)
        if rule.tag_status == "any" and rule.rule_priority != highest:
            later = next(i for i, r in enumerate(rules) if r.rule_priority == highest)
            raise where.error(
                "rulePriority",
                f'must be the highest in the policy because tagStatus is "any" (that rule is '
                f"evaluated last), but rules[{later}] has rulePriority {highest}",
            )
        # "Only one rule [...] is allowed to select untagged images." The documented examples
        # pair an "untagged" rule with an "any" rule, so this limits rules with tagStatus
        # "untagged".
        if rule.tag_status == "untagged":
            if untagged is not None:
                raise where.error(
                    "selection.tagStatus",
                    f'"untagged" is already used by rules[{untagged}] (rulePriority '
                    f"{rules[untagged].rule_priority}): only one rule may select untagged images",
                )
            untagged = index
        # "The set of [...] rules [...] must contain a unique set of prefixes."
        for key, tags, seen in (
            ("tagPrefixList", rule.tag_prefixes, prefix_sets),
            ("tagPatternList", rule.tag_patterns, pattern_sets),
        ):
            if not tags:
                continue
            tag_set = frozenset(tags)
            if tag_set in seen:
                other = seen[tag_set]
                raise where.error(
                    f"selection.{key}",
                    f"{json.dumps(sorted(tag_set))} is the same as rules[{other}]'s "
                    f"(rulePriority {rules[other].rule_priority}): each rule needs a unique set",
                )
            seen[tag_set] = index


def _tag_list(selection: Mapping[str, Any], key: str, where: RuleAt) -> tuple[str, ...] | None:
    if key not in selection:
        return None
    value = selection[key]
    field = f"selection.{key}"
    if not isinstance(value, list):
        raise where.error(field, f"must be a list of strings, not {json_type(value)}")
    if not value:
        raise where.error(field, "is empty: give at least one tag")
    for item in value:
        if not isinstance(item, str):
            raise where.error(field, f"must hold only strings; found {json_value(item)}")
        if not item:
            raise where.error(field, "has an empty string, which would match every tag")
    return tuple(value)


def _enum(mapping: Mapping[str, Any], key: str, allowed: tuple[_T, ...], where: RuleAt) -> _T:
    field = f"selection.{key}"
    if key not in mapping:
        raise where.error(field, f"is required: one of {_or(allowed)}")
    value = mapping[key]
    for option in allowed:
        if value == option:
            return option
    raise where.error(field, f"must be one of {_or(allowed)}, not {json_value(value)}")


@functools.lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """ECR's tag patterns: `*` is any run of characters (none included); nothing else is
    special. `prod*` matches `prod`, `prod1`, `production-team1`; `*prod*` matches
    `repo-production`."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _and(values: Sequence[str]) -> str:
    quoted = [json.dumps(v) for v in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _or(values: Sequence[str]) -> str:
    return ", ".join(json.dumps(v) for v in values)

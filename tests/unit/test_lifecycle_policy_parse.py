"""Lifecycle policy documents: ECR's grammar parses to a normal form, and every constraint ECR
documents is enforced with an error naming the rule (index and rulePriority) and the field."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from pullthrough.lifecycle.lifecycle_policy import LifecyclePolicy, LifecyclePolicyError

# The user guide's "Filtering on all images", example B: every rule type in one policy.
ECR_ALL_RULE_TYPES: dict[str, Any] = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "Rule 1",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["alpha*"],
                "countType": "imageCountMoreThan",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "Rule 2",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 3,
            "description": "Rule 3",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        },
    ]
}


def test_ecr_example_parses_to_itself() -> None:
    policy = LifecyclePolicy.parse(json.dumps(ECR_ALL_RULE_TYPES))

    assert policy.to_json() == ECR_ALL_RULE_TYPES
    assert [r.rule_priority for r in policy.rules] == [1, 2, 3]
    assert policy.rules[0].tag_patterns == ("alpha*",)
    assert policy.rules[1].count_type == "sinceImagePushed"


def test_text_bytes_and_mappings_parse_alike() -> None:
    text = json.dumps(ECR_ALL_RULE_TYPES)
    assert (
        LifecyclePolicy.parse(text)
        == LifecyclePolicy.parse(text.encode())
        == LifecyclePolicy.parse(ECR_ALL_RULE_TYPES)
    )


def test_normal_form_orders_rules_and_drops_defaults() -> None:
    document = {
        "rules": [
            {
                "action": {"type": "expire"},
                "selection": {
                    "countNumber": 30,
                    "countUnit": "days",
                    "countType": "sinceImagePulled",
                    "storageClass": "standard",
                    "tagStatus": "any",
                },
                "rulePriority": 10,
            },
            {
                "rulePriority": 2,
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": ["prod", "release"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 5,
                },
                "action": {"type": "expire"},
            },
        ]
    }

    policy = LifecyclePolicy.parse(document)

    assert policy.to_json() == {
        "rules": [
            {
                "rulePriority": 2,
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": ["prod", "release"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 5,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 10,
                "selection": {
                    "tagStatus": "any",
                    "countType": "sinceImagePulled",
                    "countUnit": "days",
                    "countNumber": 30,
                },
                "action": {"type": "expire"},
            },
        ]
    }
    assert LifecyclePolicy.parse(policy.to_json()) == policy
    assert LifecyclePolicy.parse(json.dumps(policy.to_json())) == policy


def test_four_wildcards_per_pattern_are_allowed() -> None:
    # The guide: '["*test*1*2*3", "test*1*2*3*"] is valid'.
    policy = LifecyclePolicy.parse(
        policy_with(selection={"tagPatternList": ["*test*1*2*3", "test*1*2*3*"]})
    )
    assert policy.rules[0].tag_patterns == ("*test*1*2*3", "test*1*2*3*")


def test_the_brief_example_message() -> None:
    document = {
        "rules": [
            rule(1, tagStatus="untagged"),
            rule(2, tagStatus="tagged", tagPatternList=DROP),
        ]
    }
    with pytest.raises(LifecyclePolicyError) as caught:
        LifecyclePolicy.parse(document)
    assert str(caught.value) == (
        'rules[1] (rulePriority 2): selection.tagPrefixList is required when tagStatus is "tagged"'
        " (or give tagPatternList)"
    )
    assert (caught.value.rule_priority, caught.value.field) == (2, "selection.tagPrefixList")


# Invalid rules. Each case is a list of rules; the error must name `rules[index] (rulePriority
# priority)` and the field, and carry them as attributes.

DROP = object()  # a selection/rule value meaning "leave this key out"


def rule(priority: Any = 1, *, action: Any = None, drop: tuple[str, ...] = (), **sel: Any) -> Any:
    """A valid rule (tagged "prod*", keep 5), with selection keys replaced by `sel` (DROP to
    remove one), rule-level keys in `drop` removed, and `action` replacing the action."""
    selection: dict[str, Any] = {
        "tagStatus": "tagged",
        "tagPatternList": ["prod*"],
        "countType": "imageCountMoreThan",
        "countNumber": 5,
    }
    if sel.get("tagStatus", "tagged") != "tagged":
        del selection["tagPatternList"]
    for key, value in sel.items():
        if value is DROP:
            selection.pop(key, None)
        else:
            selection[key] = value
    body: dict[str, Any] = {
        "rulePriority": priority,
        "selection": selection,
        "action": {"type": "expire"} if action is None else action,
    }
    for key in drop:
        del body[key]
    return body


def policy_with(selection: dict[str, Any]) -> dict[str, Any]:
    return {"rules": [rule(1, **selection)]}


SINCE: dict[str, Any] = {"countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14}


def case(name: str, rules: list[Any], at: str, field: str, says: str) -> Any:
    """An invalid policy: its rules, where the error must say it is (`rules[1] (rulePriority
    2)`), the field it must name ("" for none), and words the message must contain."""
    return pytest.param(rules, at, field, says, id=name)


INVALID_RULES = [
    # Tag status and tag lists.
    case(
        "tagged-without-a-list",
        [rule(1, tagPatternList=DROP)],
        "rules[0] (rulePriority 1)",
        "selection.tagPrefixList",
        'is required when tagStatus is "tagged"',
    ),
    case(
        "tagged-with-both-lists",
        [rule(1, tagPrefixList=["prod"])],
        "rules[0] (rulePriority 1)",
        "selection.tagPatternList",
        "cannot be given together with tagPrefixList",
    ),
    case(
        "untagged-with-a-prefix-list",
        [rule(1, tagStatus="untagged", tagPrefixList=["prod"])],
        "rules[0] (rulePriority 1)",
        "selection.tagPrefixList",
        'must be omitted when tagStatus is "untagged"',
    ),
    case(
        "untagged-with-a-pattern-list",
        [rule(1, tagStatus="untagged", tagPatternList=["prod*"])],
        "rules[0] (rulePriority 1)",
        "selection.tagPatternList",
        'must be omitted when tagStatus is "untagged"',
    ),
    case(
        "any-with-a-pattern-list",
        [rule(7, tagStatus="any", tagPatternList=["prod*"])],
        "rules[0] (rulePriority 7)",
        "selection.tagPatternList",
        'must be omitted when tagStatus is "any"',
    ),
    case(
        "unknown-tag-status",
        [rule(1, tagStatus="TAGGED")],
        "rules[0] (rulePriority 1)",
        "selection.tagStatus",
        'must be one of "tagged", "untagged", "any", not "TAGGED"',
    ),
    case(
        "missing-tag-status",
        [rule(1, tagStatus=DROP)],
        "rules[0] (rulePriority 1)",
        "selection.tagStatus",
        "is required",
    ),
    case(
        "five-wildcards",
        [rule(1, tagPatternList=["prod*", "*a*b*c*d*"])],
        "rules[0] (rulePriority 1)",
        "selection.tagPatternList",
        '"*a*b*c*d*" with 5 wildcards (*); ECR allows at most 4',
    ),
    case(
        "the-guides-invalid-pattern",
        [rule(1, tagPatternList=["test*1*2*3*4*5*6"])],
        "rules[0] (rulePriority 1)",
        "selection.tagPatternList",
        "with 6 wildcards",
    ),
    case(
        "empty-tag-list",
        [rule(1, tagPatternList=[])],
        "rules[0] (rulePriority 1)",
        "selection.tagPatternList",
        "is empty",
    ),
    case(
        "empty-prefix",
        [rule(1, tagPatternList=DROP, tagPrefixList=[""])],
        "rules[0] (rulePriority 1)",
        "selection.tagPrefixList",
        "has an empty string",
    ),
    case(
        "tag-list-not-a-list",
        [rule(1, tagPatternList="prod*")],
        "rules[0] (rulePriority 1)",
        "selection.tagPatternList",
        "must be a list of strings, not a string",
    ),
    case(
        "tag-list-with-a-number",
        [rule(1, tagPatternList=["prod*", 7])],
        "rules[0] (rulePriority 1)",
        "selection.tagPatternList",
        "must hold only strings; found 7",
    ),
    # Count type, unit and number.
    case(
        "since-without-count-unit",
        [rule(1, **SINCE | {"countUnit": DROP})],
        "rules[0] (rulePriority 1)",
        "selection.countUnit",
        'is required when countType is "sinceImagePushed"',
    ),
    case(
        "pulled-without-count-unit",
        [rule(1, countType="sinceImagePulled", countNumber=30)],
        "rules[0] (rulePriority 1)",
        "selection.countUnit",
        'is required when countType is "sinceImagePulled"',
    ),
    case(
        "count-unit-hours",
        [rule(1, **SINCE | {"countUnit": "hours"})],
        "rules[0] (rulePriority 1)",
        "selection.countUnit",
        'must be "days", not "hours"',
    ),
    case(
        "count-unit-with-image-count",
        [rule(1, countUnit="days")],
        "rules[0] (rulePriority 1)",
        "selection.countUnit",
        'must be omitted when countType is "imageCountMoreThan"',
    ),
    case(
        "count-number-zero",
        [rule(1, countNumber=0)],
        "rules[0] (rulePriority 1)",
        "selection.countNumber",
        "must be a positive integer (0 is not accepted), not 0",
    ),
    case(
        "count-number-negative",
        [rule(1, countNumber=-3)],
        "rules[0] (rulePriority 1)",
        "selection.countNumber",
        "not -3",
    ),
    case(
        "count-number-string",
        [rule(1, countNumber="5")],
        "rules[0] (rulePriority 1)",
        "selection.countNumber",
        'not "5"',
    ),
    case(
        "count-number-fraction",
        [rule(1, countNumber=1.5)],
        "rules[0] (rulePriority 1)",
        "selection.countNumber",
        "1.5",
    ),
    case(
        "count-number-missing",
        [rule(1, countNumber=DROP)],
        "rules[0] (rulePriority 1)",
        "selection.countNumber",
        "required",
    ),
    case(
        "unknown-count-type",
        [rule(1, countType="sinceImageCreated")],
        "rules[0] (rulePriority 1)",
        "selection.countType",
        'not "sinceImageCreated"',
    ),
    case(
        "missing-count-type",
        [rule(1, countType=DROP)],
        "rules[0] (rulePriority 1)",
        "selection.countType",
        "is required",
    ),
    case(
        "since-image-transitioned",
        [rule(1, **SINCE | {"countType": "sinceImageTransitioned"})],
        "rules[0] (rulePriority 1)",
        "selection.countType",
        "no archive storage class",
    ),
    case(
        "archive-storage-class",
        [rule(1, storageClass="archive")],
        "rules[0] (rulePriority 1)",
        "selection.storageClass",
        'must be "standard" (or omitted), not "archive"',
    ),
    # Action.
    case(
        "transition-action",
        [rule(1, action={"type": "transition", "targetStorageClass": "archive"})],
        "rules[0] (rulePriority 1)",
        "action.targetStorageClass",
        'unknown field "targetStorageClass"',
    ),
    case(
        "transition-action-alone",
        [rule(1, action={"type": "transition"})],
        "rules[0] (rulePriority 1)",
        "action.type",
        '"transition" is not supported: pullthrough has no archive',
    ),
    case(
        "delete-action",
        [rule(1, action={"type": "delete"})],
        "rules[0] (rulePriority 1)",
        "action.type",
        'not "delete"',
    ),
    case(
        "action-without-type",
        [rule(1, action={})],
        "rules[0] (rulePriority 1)",
        "action.type",
        "is required",
    ),
    case(
        "action-not-an-object",
        [rule(1, action="expire")],
        "rules[0] (rulePriority 1)",
        "action",
        "must be a JSON object",
    ),
    case(
        "missing-action",
        [rule(1, drop=("action",))],
        "rules[0] (rulePriority 1)",
        "action",
        "is required",
    ),
    case(
        "missing-selection",
        [rule(1, drop=("selection",))],
        "rules[0] (rulePriority 1)",
        "selection",
        "is required",
    ),
    # Unknown fields: ECR's schema rejects them.
    case(
        "unknown-selection-field",
        [rule(1, tagList=["prod"])],
        "rules[0] (rulePriority 1)",
        "selection.tagList",
        'selection has an unknown field "tagList"',
    ),
    case(
        "unknown-rule-field",
        [rule(1) | {"priority": 1}],
        "rules[0] (rulePriority 1)",
        "priority",
        'the rule has an unknown field "priority"',
    ),
    case(
        "description-not-a-string",
        [rule(1) | {"description": 5}],
        "rules[0] (rulePriority 1)",
        "description",
        "must be a string, not a number",
    ),
    # rulePriority.
    case(
        "priority-zero",
        [rule(0)],
        "rules[0]",
        "rulePriority",
        "must be an integer, 1 or more; got 0",
    ),
    case("priority-negative", [rule(-1)], "rules[0]", "rulePriority", "got -1"),
    case("priority-string", [rule("1")], "rules[0]", "rulePriority", 'got "1"'),
    case("priority-fraction", [rule(1.5)], "rules[0]", "rulePriority", "got 1.5"),
    case("priority-boolean", [rule(True)], "rules[0]", "rulePriority", "got true"),
    case(
        "priority-missing",
        [rule(1, drop=("rulePriority",))],
        "rules[0]",
        "rulePriority",
        "required",
    ),
    case(
        "priority-used-twice",
        [rule(1), rule(2, tagPatternList=["beta*"]), rule(1, tagPatternList=["dev*"])],
        "rules[2] (rulePriority 1)",
        "rulePriority",
        "1 is already used by rules[0]: each rule needs a unique rulePriority",
    ),
    # Constraints across rules.
    case(
        "any-not-last",
        [rule(3, tagStatus="any"), rule(5)],
        "rules[0] (rulePriority 3)",
        "rulePriority",
        'must be the highest in the policy because tagStatus is "any" (that rule is evaluated '
        "last), but rules[1] has rulePriority 5",
    ),
    case(
        "two-any-rules",
        [rule(1), rule(9, tagStatus="any"), rule(4, tagStatus="any", countNumber=9)],
        "rules[2] (rulePriority 4)",
        "rulePriority",
        'tagStatus is "any"',
    ),
    case(
        "two-untagged-rules",
        [rule(1, tagStatus="untagged"), rule(2, tagStatus="untagged", **SINCE)],
        "rules[1] (rulePriority 2)",
        "selection.tagStatus",
        '"untagged" is already used by rules[0] (rulePriority 1): only one rule may select '
        "untagged images",
    ),
    case(
        "same-prefix-set",
        [
            rule(1, tagPatternList=DROP, tagPrefixList=["prod", "beta"]),
            rule(2, tagPatternList=DROP, tagPrefixList=["beta", "prod"], **SINCE),
        ],
        "rules[1] (rulePriority 2)",
        "selection.tagPrefixList",
        '["beta", "prod"] is the same as rules[0]\'s (rulePriority 1): '
        "each rule needs a unique set",
    ),
    case(
        "same-pattern-set",
        [rule(1), rule(2, **SINCE)],
        "rules[1] (rulePriority 2)",
        "selection.tagPatternList",
        "is the same as rules[0]'s",
    ),
    # Structure.
    case(
        "rule-not-an-object",
        [rule(1), [1]],
        "rules[1]",
        "",
        "rules[1] must be a JSON object, not a list",
    ),
    case(
        "selection-not-an-object",
        [rule(1) | {"selection": ["tagged"]}],
        "rules[0] (rulePriority 1)",
        "selection",
        "selection must be a JSON object, not a list",
    ),
]


@pytest.mark.parametrize(("rules", "at", "field", "says"), INVALID_RULES)
def test_invalid_rule_is_rejected_naming_rule_and_field(
    rules: list[Any], at: str, field: str, says: str
) -> None:
    with pytest.raises(LifecyclePolicyError) as caught:
        LifecyclePolicy.parse({"rules": copy.deepcopy(rules)})

    error = caught.value
    message = str(error)
    assert message.startswith(at), message
    priority = re.search(r"\(rulePriority (\d+)\)", at)
    assert error.rule_priority == (int(priority[1]) if priority else None)
    assert error.field == (field or None)
    assert field.rsplit(".", 1)[-1] in message
    assert says in message, message
    # The same error from the JSON text.
    with pytest.raises(LifecyclePolicyError) as from_text:
        LifecyclePolicy.parse(json.dumps({"rules": rules}))
    assert str(from_text.value) == message


INVALID_DOCUMENTS: list[tuple[str, str | bytes, str | None, str]] = [
    # (id, document text, field, words the message must contain)
    ("not-json", '{"rules": [', None, "the lifecycle policy is not valid JSON"),
    ("nan", '{"rules": NaN}', None, "NaN is not a JSON number"),
    ("not-utf8", b'{"rules": "\xff"}', None, "not UTF-8"),
    ("not-an-object", "[]", None, "the lifecycle policy must be a JSON object, not a list"),
    ("no-rules", "{}", "rules", 'the lifecycle policy has no "rules"'),
    ("rules-not-a-list", '{"rules": {}}', "rules", "rules must be a list of rules, not an object"),
    ("no-rule", '{"rules": []}', "rules", "a policy needs at least one rule"),
    (
        "unknown-top-level-field",
        '{"Version": "2012-10-17", "rules": []}',
        "Version",
        'the lifecycle policy has an unknown field "Version"',
    ),
    (
        "duplicate-key",
        '{"rules": [], "rules": []}',
        "rules",
        'the lifecycle policy has the field "rules" more than once',
    ),
    (
        "too-many-rules",
        json.dumps({"rules": [rule(n, tagPatternList=[f"t{n}*"]) for n in range(1, 52)]}),
        "rules",
        "rules has 51 rules; ECR allows at most 50",
    ),
    (
        "too-long",
        json.dumps({"rules": [rule(1) | {"description": "x" * 30_720}]}),
        None,
        "ECR allows at most 30720",
    ),
]


@pytest.mark.parametrize(
    ("document", "field", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID_DOCUMENTS],
)
def test_invalid_document_is_rejected(document: str | bytes, field: str | None, words: str) -> None:
    with pytest.raises(LifecyclePolicyError) as caught:
        LifecyclePolicy.parse(document)
    assert words in str(caught.value)
    assert caught.value.rule_priority is None
    assert caught.value.field == field


def test_a_duplicate_key_inside_a_rule_is_named() -> None:
    text = (
        '{"rules": [{"rulePriority": 1, "rulePriority": 2, "selection": {}, '
        '"action": {"type": "expire"}}]}'
    )
    with pytest.raises(LifecyclePolicyError) as caught:
        LifecyclePolicy.parse(text)
    assert str(caught.value) == 'rules[0]: the rule has the field "rulePriority" more than once'
    assert caught.value.field == "rulePriority"


def test_a_policy_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="rulePriority"):
        LifecyclePolicy.parse({"rules": [rule(0)]})

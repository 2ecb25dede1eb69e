"""Carrying out a plan through the admin API, one call per step, in an order that never leaves
the server worse off halfway:

1. secrets are stored before the rules that name them;
2. a rule giving up `default: true` goes first (a second default is refused), then new and
   changed rules, and only then deletions, so a renamed rule's replacement is already serving;
3. secrets are deleted once no rule of the file names them;
4. templates, then scanning;
5. the registry policy last: one that took this caller's `registry:Admin` away would otherwise
   stop the apply halfway.

The first failure stops the apply; `ApplyFailed` says which step and what was already done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pullthrough.client.admin import AdminError, path_segment
from pullthrough.declarative.fields import Fields
from pullthrough.declarative.plan import Action, Plan, ResourceChange, ResourceType
from pullthrough.declarative.state import AdminApi

Verb = Literal["create", "update", "delete", "demote"]
_PAST = {"create": "created", "update": "updated", "delete": "deleted", "demote": "demoted"}
_COLLECTIONS: dict[ResourceType, str] = {
    "secret": "/secrets",
    "rule": "/rules",
    "template": "/templates",
    "scanning": "/scanning",
    "registry_policy": "/registry-policy",
}


@dataclass(frozen=True)
class Step:
    """One admin API call. `body` may hold a secret's value: it is never part of the repr."""

    change: ResourceChange
    verb: Verb
    method: str
    path: str
    body: Any = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        if self.verb == "demote":
            return f"set default: false on {self.change.address} (before another rule is default)"
        return f"{self.verb} {self.change.address}"

    def done(self) -> str:
        if self.verb == "demote":
            return f"set default: false on {self.change.address}"
        return f"{_PAST[self.verb]} {self.change.address}"


class ApplyFailed(Exception):
    """A step the server refused; the steps in `done` had been applied before it."""

    def __init__(self, step: Step, error: AdminError, done: list[Step], total: int) -> None:
        super().__init__(f"{step.describe()} failed: {error.message}")
        self.step = step
        self.error = error
        self.done = done
        self.total = total


def apply_steps(plan: Plan) -> list[Step]:
    """The plan's calls, in the safe order described above."""

    def changes(kind: ResourceType, *actions: Action) -> list[ResourceChange]:
        return [c for c in plan.changes if c.type == kind and c.action in actions]

    steps = [_step(c) for c in changes("secret", "create", "update")]
    steps += _demotions(changes("rule", "delete"), changes("rule", "create", "update"))
    steps += _rule_steps(changes("rule", "create"), changes("rule", "update"))
    steps += [_step(c) for c in changes("rule", "delete")]
    steps += [_step(c) for c in changes("secret", "delete")]
    steps += [_step(c) for c in changes("template", "create", "update", "delete")]
    steps += [_step(c) for c in changes("scanning", "update")]
    steps += [_step(c) for c in changes("registry_policy", "create", "update", "delete")]
    return steps


def _is_default(fields: Fields | None) -> bool:
    return bool(fields and fields.get("default"))


def _rule_steps(creates: list[ResourceChange], updates: list[ResourceChange]) -> list[Step]:
    giving_up = [c for c in updates if _is_default(c.before) and not _is_default(c.after)]
    steps = [_step(c) for c in giving_up]
    steps += [_step(c) for c in creates]
    steps += [_step(c) for c in updates if c not in giving_up]
    return steps


def _demotions(deletes: list[ResourceChange], others: list[ResourceChange]) -> list[Step]:
    """A default rule that goes away while another becomes the default: it keeps serving until
    its replacement does, so it is first stripped of `default` (the server allows one)."""
    if not any(_is_default(c.after) and not _is_default(c.before) for c in others):
        return []
    demoted = []
    for change in deletes:
        if _is_default(change.before):
            assert change.before is not None
            body = {k: v for k, v in change.before.items() if v is not None} | {"default": False}
            demoted.append(Step(change, "demote", "PUT", _one(change), body))
    return demoted


def _one(change: ResourceChange) -> str:
    """The resource's own path: `/rules/ghcr%2Forg`, or the singleton's collection path."""
    collection = _COLLECTIONS[change.type]
    return collection if change.name is None else f"{collection}/{path_segment(change.name)}"


def _step(change: ResourceChange) -> Step:
    if change.action == "delete":
        return Step(change, "delete", "DELETE", _one(change))
    verb: Verb = "create" if change.action == "create" else "update"
    if change.type == "secret":
        assert change.secret is not None
        return Step(change, verb, "PUT", _one(change), change.secret.to_api())
    assert change.after is not None
    # Unset fields are left out: the server fills the same defaults the plan compared with.
    body = {key: value for key, value in change.after.items() if value is not None}
    if verb == "create" and change.name is not None:
        # POST, not PUT: a resource someone created since the plan is a conflict, not replaced.
        return Step(change, verb, "POST", _COLLECTIONS[change.type], body)
    return Step(change, verb, "PUT", _one(change), body)


def apply_plan(
    plan: Plan, api: AdminApi, on_step: Callable[[Step], None] = lambda _: None
) -> list[Step]:
    """Run the plan's steps in order, calling `on_step` after each; ApplyFailed at the first
    refusal, with what was done before it."""
    steps = apply_steps(plan)
    done: list[Step] = []
    for step in steps:
        try:
            _call(api, step)
        except AdminError as exc:
            raise ApplyFailed(step, exc, done, len(steps)) from None
        done.append(step)
        on_step(step)
    return done


def _call(api: AdminApi, step: Step) -> None:
    if step.method == "POST":
        api.post(step.path, step.body)
    elif step.method == "PUT":
        api.put(step.path, step.body)
    else:
        api.delete(step.path)


def describe_all(steps: Iterable[Step]) -> str:
    return ", ".join(step.done() for step in steps) or "nothing"

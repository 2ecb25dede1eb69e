"""Image references in YAML (Kubernetes manifests, Helm values, Compose files) rewritten to go
through the cache, with every other byte of the file left as it was.

ruamel.yaml composes the documents only to find where each image scalar is written; the new
text is spliced into the original string at that place, so comments, quoting, anchors, line
endings and layout stay exactly as they were.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pullthrough.client.naming import CacheNaming, NoRule
from pullthrough.oci.reference import ReferenceInvalid, parse_reference

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BLOCK_STYLES = ("|", ">")
_QUOTE_STYLES = ("'", '"')
# A plain scalar cannot start with these; a value that does is written double-quoted instead.
_INDICATORS = tuple("-?:,[]{}#&*!|>'\"%@`")


class YamlInvalid(ValueError):
    """Text that is not YAML; the message gives the line and column."""


@dataclass(frozen=True, slots=True)
class Change:
    line: int  # 1-based, where the image's (repository) value is written
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Skipped:
    line: int
    reference: str
    reason: str


@dataclass(frozen=True, slots=True)
class RewriteResult:
    text: str
    changes: tuple[Change, ...]
    skipped: tuple[Skipped, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def rewrite_text(text: str, naming: CacheNaming) -> RewriteResult:
    """Point every image reference in `text` (one or more YAML documents) at the cache.

    An image is the string value of a key `image` (Kubernetes containers, Compose services,
    Helm's `image: nginx:1.27`), or a mapping under a key ending in `image`/`Image` that has a
    `repository` (Helm's `{registry, repository, tag, digest}`): with a `registry`, it becomes
    the cache's host and the repository `<prefix>/<path>`; without, the repository becomes
    `<cache host>/<prefix>/<path>`. References already through the cache stay as they are, so
    a second run changes nothing. References no rule caches, templated ones (`{{ }}`, `${ }`)
    and ones that cannot be edited in place are left alone and listed in `skipped`.
    """
    roots = _compose(text)
    entries, uses = _entries(roots)
    planner = _Planner(text, naming, uses)
    for parent, key, value in entries:
        if key == "image" and isinstance(value, ScalarNode):
            planner.string_image(value, parent)
        elif key.lower().endswith("image") and isinstance(value, MappingNode):
            planner.mapping_image(value)
    plans, skipped = planner.settle()
    new_text = _splice(text, [edit for plan in plans for edit in plan.edits])
    if plans:
        try:
            _compose(new_text)
        except YamlInvalid as exc:  # a bug here, never the file's fault: write nothing
            raise RuntimeError(f"rewriting broke the YAML ({exc}); please report this") from None
    return RewriteResult(
        text=new_text,
        changes=tuple(sorted((Change(p.line, p.old, p.new) for p in plans), key=_by_line)),
        skipped=tuple(sorted(skipped, key=_by_line)),
    )


def _by_line(item: Change | Skipped) -> int:
    return item.line


def _compose(text: str) -> list[Node]:
    yaml = YAML(typ="rt")
    try:
        with warnings.catch_warnings():
            # YAML 1.2 lets an anchor be defined again; the later one wins, as it does here.
            warnings.simplefilter("ignore", ReusedAnchorWarning)
            return [root for root in yaml.compose_all(text) if root is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "cannot parse").split())
        hint = "; a Helm template? rewrite its values file instead" if "{{" in text else ""
        raise YamlInvalid(f"not valid YAML{where}: {problem}{hint}") from None
    except YAMLError as exc:
        raise YamlInvalid(f"not valid YAML: {' '.join(str(exc).split())}") from None


Entry = tuple[MappingNode, str, Node]


def _entries(roots: Iterable[Node]) -> tuple[list[Entry], dict[int, list[str | None]]]:
    """Every mapping entry with a string key (mapping, key, value), each mapping once however
    often it is aliased, in document order; and for every node, the keys it is the value of
    at each place it is used (None where it is a list item or a key)."""
    entries: list[Entry] = []
    uses: dict[int, list[str | None]] = defaultdict(list)
    seen: set[int] = set()
    stack = list(reversed(list(roots)))
    while stack:
        node = stack.pop()
        if isinstance(node, ScalarNode) or id(node) in seen:
            continue
        seen.add(id(node))
        children: list[Node] = []
        if isinstance(node, MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, ScalarNode) and key.tag == _STR else None
                uses[id(key)].append(None)
                uses[id(value)].append(name)
                if name is not None:
                    entries.append((node, name, value))
                children += (key, value)
        elif isinstance(node, SequenceNode):
            for item in node.value:
                uses[id(item)].append(None)
                children.append(item)
        stack.extend(reversed(children))
    return entries, uses


@dataclass(frozen=True, slots=True)
class _Edit:
    node: ScalarNode
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class _Plan:
    line: int
    old: str
    new: str
    edits: tuple[_Edit, ...]


class _Planner:
    """Decides, image by image, what to write where; `settle` drops plans that disagree
    about a value several images share through an anchor."""

    def __init__(self, text: str, naming: CacheNaming, uses: dict[int, list[str | None]]) -> None:
        self._text = text
        self._naming = naming
        self._uses = uses
        self._plans: dict[int, _Plan] = {}
        self._skipped: dict[int, Skipped] = {}
        self._done: set[int] = set()
        # Node -> the images that read it, so that a shared value changes for all or none.
        self._readers: dict[int, set[int]] = defaultdict(set)

    def string_image(self, node: ScalarNode, service: MappingNode) -> None:
        image = id(node)
        if image in self._done or node.tag != _STR or not node.value:
            return
        self._done.add(image)
        value, line = node.value, _line(node)
        self._readers[id(node)].add(image)
        reason = _unreadable(node)
        if any(isinstance(k, ScalarNode) and k.value == "build" for k, _ in service.value):
            # Compose: with `build:`, `image:` names what is built here; nothing is pulled.
            reason = "the service builds this image (build:), so it is not pulled"
        if reason:
            self._skip(image, line, value, reason)
            return
        try:
            cached = self._naming.resolve(value)
        except (ReferenceInvalid, NoRule) as exc:
            self._skip(image, line, value, str(exc))
            return
        if cached.full == value:
            return
        edit = self._edit(node, cached.full, "image")
        if isinstance(edit, str):
            self._skip(image, line, value, edit)
            return
        self._plans[image] = _Plan(line, value, cached.full, (edit,))

    def mapping_image(self, node: MappingNode) -> None:
        image = id(node)
        if image in self._done:
            return
        fields = {k.value: v for k, v in node.value if isinstance(k, ScalarNode)}
        repository = _string(fields.get("repository"))
        if repository is None or not repository.value:
            return  # a tag-only override, or not an image at all
        self._done.add(image)
        registry = _string(fields.get("registry"))
        name = repository.value
        if registry is not None and registry.value:
            name = f"{registry.value}/{name}"
        suffix = _suffix(fields.get("tag"), fields.get("digest"))
        line = _line(repository)
        parts = [part for part in (registry, repository) if part is not None]
        for part in parts:
            self._readers[id(part)].add(image)
        for part in parts:
            reason = _unreadable(part)
            if reason:
                self._skip(image, line, name + suffix, reason)
                return
        try:
            reference = parse_reference(name)
            cached = self._naming.resolve(reference)
        except (ReferenceInvalid, NoRule) as exc:
            self._skip(image, line, name + suffix, str(exc))
            return
        wanted: list[tuple[ScalarNode, str, str]] = []
        if registry is not None:
            new_name = f"{self._naming.cache_host}/{cached.repository}{reference.suffix}"
            wanted.append((registry, self._naming.cache_host, "registry"))
            wanted.append((repository, cached.repository + reference.suffix, "repository"))
        else:
            new_name = cached.full
            wanted.append((repository, cached.full, "repository"))
        edits: list[_Edit] = []
        for part, value, role in wanted:
            if part.value == value:
                continue
            edit = self._edit(part, value, role)
            if isinstance(edit, str):
                self._skip(image, line, name + suffix, edit)
                return
            edits.append(edit)
        if edits:
            self._plans[image] = _Plan(line, name + suffix, new_name + suffix, tuple(edits))

    def settle(self) -> tuple[list[_Plan], list[Skipped]]:
        """Keep a plan only if every image that reads the values it edits is rewritten, to
        the same text; repeat, since dropping one plan can strand another."""
        while True:
            wanted: dict[int, set[str]] = defaultdict(set)
            for plan in self._plans.values():
                for edit in plan.edits:
                    wanted[id(edit.node)].add(edit.text)
            stranded = {
                node
                for node, texts in wanted.items()
                if len(texts) > 1 or not self._readers[node] <= set(self._plans)
            }
            dropped = [
                image
                for image, plan in self._plans.items()
                if any(id(edit.node) in stranded for edit in plan.edits)
            ]
            if not dropped:
                return list(self._plans.values()), list(self._skipped.values())
            for image in dropped:
                plan = self._plans.pop(image)
                shared = next(e for e in plan.edits if id(e.node) in stranded)
                self._skip(
                    image,
                    plan.line,
                    plan.old,
                    f"shares the anchored value {shared.node.value!r} (line {_line(shared.node)}) "
                    "with an image that cannot be rewritten the same way; give it its own value",
                )

    def _skip(self, image: int, line: int, reference: str, reason: str) -> None:
        self._skipped[image] = Skipped(line, reference, reason)

    def _edit(self, node: ScalarNode, value: str, role: str) -> _Edit | str:
        """Where to write `value` in place of `node`'s text, or why it cannot be done."""
        keys = {key if key is not None else "a list item or key" for key in self._uses[id(node)]}
        others = sorted(key for key in keys if not key.lower().endswith(role))
        if others:
            return (
                f"its anchored value is also used under {', '.join(others)}; give the image "
                "its own value to have it rewritten"
            )
        span = _span(node, self._text)
        if isinstance(span, str):
            return span
        start, end = span
        text = value
        if node.style is None and value.startswith(_INDICATORS):
            text = f'"{value}"'
        return _Edit(node, start, end, text)


def _string(node: Node | None) -> ScalarNode | None:
    return node if isinstance(node, ScalarNode) and node.tag == _STR else None


def _suffix(tag: Node | None, digest: Node | None) -> str:
    """`:tag@digest` from a Helm image's separate keys (numbers too: `tag: 1.27`)."""
    tag_text, digest_text = _written(tag), _written(digest)
    return (f":{tag_text}" if tag_text else "") + (f"@{digest_text}" if digest_text else "")


def _written(node: Node | None) -> str:
    """A scalar's text as written, whatever type it resolves to; empty for null."""
    if isinstance(node, ScalarNode) and node.tag != _NULL:
        return str(node.value)
    return ""


def _line(node: ScalarNode) -> int:
    return int(node.start_mark.line) + 1


def _unreadable(node: ScalarNode) -> str | None:
    """Why a value is not taken as a reference at all: a template, or a block scalar."""
    if "{{" in node.value or "$" in node.value:
        return "templated; the template fills it in, so it is left as it is"
    if node.style in _BLOCK_STYLES:
        return "a block scalar (| or >); write the reference on one line to have it rewritten"
    return None


def _span(node: ScalarNode, text: str) -> tuple[int, int] | str:
    """Where the scalar's characters (inside its quotes) are in `text`, or why it cannot be
    edited in place. Found from the end, since anchors and tags come before the value."""
    end = int(node.end_mark.index)
    value: str = node.value
    if node.style in _QUOTE_STYLES:
        start = end - 1 - len(value)
        if text[start - 1 : end] != f"{node.style}{value}{node.style}":
            return "written with escapes; write it without to have it rewritten"
        return start, end - 1
    start = end - len(value)
    if start < int(node.start_mark.index) or text[start:end] != value:
        return "written over several lines; write it on one line to have it rewritten"
    return start, end


def _splice(text: str, edits: Sequence[_Edit]) -> str:
    """`text` with each edit's span replaced; edits of one shared node are one edit."""
    unique = sorted({(e.start, e.end): e for e in edits}.values(), key=lambda e: e.start)
    pieces: list[str] = []
    position = 0
    for edit in unique:
        pieces += (text[position : edit.start], edit.text)
        position = edit.end
    pieces.append(text[position:])
    return "".join(pieces)

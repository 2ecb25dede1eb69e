"""Rewriting image references in YAML: the sample Kubernetes, Helm values and Compose files
come out as their hand-written `.expected` files byte for byte, and a second run changes
nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pullthrough.client.naming import CacheNaming
from pullthrough.client.rewrite import Change, YamlInvalid, rewrite_text
from pullthrough.config import RuleConfig, Settings

DATA = Path(__file__).parent.parent / "data" / "rewrite"
SAMPLES = ("kubernetes.yaml", "values.yaml", "compose.yaml")
CACHE = "127.0.0.1:5000"
RULES = (
    *Settings().rules,
    RuleConfig(prefix="ghcr/acme", upstream="https://ghcr.io", upstream_namespace="acme-corp"),
)


def naming(cache: str = CACHE) -> CacheNaming:
    return CacheNaming(RULES, cache, bare_prefixes=False)


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # not read_text: it would turn \r\n into \n


@pytest.mark.parametrize("sample", SAMPLES)
def test_samples_come_out_as_expected_byte_for_byte(sample: str) -> None:
    result = rewrite_text(read(DATA / sample), naming())
    assert result.text == read(DATA / f"{sample}.expected")
    assert result.changed


@pytest.mark.parametrize("sample", SAMPLES)
def test_a_second_run_changes_nothing(sample: str) -> None:
    first = rewrite_text(read(DATA / sample), naming())
    second = rewrite_text(first.text, naming())
    assert second.text == first.text
    assert second.changes == ()
    assert second.skipped == first.skipped  # what was left alone is still reported


def test_only_the_image_lines_change() -> None:
    source = read(DATA / "kubernetes.yaml")
    result = rewrite_text(source, naming())
    changed = {change.line for change in result.changes}
    before, after = source.splitlines(), result.text.splitlines()
    assert len(before) == len(after)
    for number, (old, new) in enumerate(zip(before, after, strict=True), start=1):
        if number not in changed:
            assert old == new, f"line {number} changed"
        else:
            # The value changes; the key, quotes and trailing comment stay.
            key = old.split("image:")[0]
            assert new.startswith(key + "image:")
            if "#" in old:
                assert new.endswith(old[old.index("  #") :])


def test_changes_and_skips_name_the_line() -> None:
    result = rewrite_text(read(DATA / "kubernetes.yaml"), naming())
    assert result.changes[:3] == (
        Change(22, "busybox:1.36", f"{CACHE}/docker-hub/library/busybox:1.36"),
        Change(
            25,
            "ghcr.io/acme-corp/shop-migrations:2.14.0",
            f"{CACHE}/ghcr/acme/shop-migrations:2.14.0",
        ),
        Change(28, "nginx:1.27.3-alpine", f"{CACHE}/docker-hub/library/nginx:1.27.3-alpine"),
    )
    assert [(s.line, s.reference) for s in result.skipped] == [
        (38, "mcr.microsoft.com/dotnet/monitor:8.0"),
        (86, "{{ .Values.fluentBit.image }}"),
    ]
    assert "no rule for registry mcr.microsoft.com" in result.skipped[0].reason
    assert "templated" in result.skipped[1].reason


def test_helm_values_report_one_change_per_image() -> None:
    result = rewrite_text(read(DATA / "values.yaml"), naming())
    assert (
        Change(
            25,
            "docker.io/bitnami/nginx:1.27.3-debian-12-r5",
            f"{CACHE}/docker-hub/bitnami/nginx:1.27.3-debian-12-r5",
        )
        in result.changes
    )
    assert Change(51, "redis:7.4", f"{CACHE}/docker-hub/library/redis:7.4") in result.changes
    assert [s.reference for s in result.skipped] == [
        "registry.internal.example.com/team/billing:5.0",
        "{{ .Values.global.imageRegistry }}/acme/app:latest",
    ]


def test_compose_images_that_are_built_are_left_alone() -> None:
    result = rewrite_text(read(DATA / "compose.yaml"), naming())
    built = [s for s in result.skipped if s.reference == "shop/api:dev"]
    assert len(built) == 1
    assert "build:" in built[0].reason


def test_line_endings_and_byte_order_mark_are_kept() -> None:
    source = "\ufeff# c\r\nspec:\r\n  image: nginx:1.27 # web\r\n  other: x\r\n"
    result = rewrite_text(source, naming())
    assert result.text == (
        f"\ufeff# c\r\nspec:\r\n  image: {CACHE}/docker-hub/library/nginx:1.27 # web\r\n"
        "  other: x\r\n"
    )
    assert result.changes[0].line == 3


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("image: nginx\n", f"image: {CACHE}/docker-hub/library/nginx\n"),
        ("image: 'nginx'\n", f"image: '{CACHE}/docker-hub/library/nginx'\n"),
        ('image: "nginx"\n', f'image: "{CACHE}/docker-hub/library/nginx"\n'),
        ("image:    nginx    # x\n", f"image:    {CACHE}/docker-hub/library/nginx    # x\n"),
        ("c: {image: nginx, n: 1}\n", f"c: {{image: {CACHE}/docker-hub/library/nginx, n: 1}}\n"),
        ("- image: !!str nginx\n", f"- image: !!str {CACHE}/docker-hub/library/nginx\n"),
        (
            "image: &i nginx\nb:\n  image: *i\n",
            f"image: &i {CACHE}/docker-hub/library/nginx\nb:\n  image: *i\n",
        ),
    ],
)
def test_quoting_tags_and_anchors_are_kept(source: str, expected: str) -> None:
    result = rewrite_text(source, naming())
    assert result.text == expected
    assert len(result.changes) == 1


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("image: |\n  nginx\n", "block scalar"),
        ("image: >-\n  nginx\n", "block scalar"),
        ('image: "ngi\\x6ex"\n', "escapes"),
        ("image: nginx:1.27\n  continued\n", "invalid tag '1.27 continued'"),  # one scalar
        ('image: "docker.io/library/\\\n  nginx"\n', "escapes"),  # an escaped line break
        ("image: ${IMAGE}\n", "templated"),
        ("image: '{{ .Values.image }}'\n", "templated"),
        ("image: Nginx\n", "must be lowercase"),
        ("name: &n nginx\nimage: *n\n", "also used under name"),
    ],
)
def test_what_cannot_be_rewritten_is_left_and_reported(source: str, reason: str) -> None:
    result = rewrite_text(source, naming())
    assert result.text == source
    assert len(result.skipped) == 1
    assert reason in result.skipped[0].reason


def test_trailing_whitespace_after_a_value_is_kept() -> None:
    source = "image: docker.io/library/nginx:1.27\n  \n"
    result = rewrite_text(source, naming())
    assert result.text == f"image: {CACHE}/docker-hub/library/nginx:1.27\n  \n"


def test_a_shared_registry_changes_for_all_its_images_or_none() -> None:
    source = (
        "registry: &r docker.io\n"
        "a:\n  image:\n    registry: *r\n    repository: bitnami/nginx\n"
        "b:\n  image:\n    registry: *r\n    repository: '{{ .Values.name }}'\n"
    )
    result = rewrite_text(source, naming())
    assert result.text == source
    assert [s.line for s in result.skipped] == [5, 9]
    assert "shares the anchored value 'docker.io' (line 1)" in result.skipped[0].reason
    assert "templated" in result.skipped[1].reason


def test_helm_registry_key_is_set_even_when_empty() -> None:
    source = 'image:\n  registry: ""\n  repository: bitnami/nginx\n  tag: "1.27"\n'
    result = rewrite_text(source, naming())
    assert result.text == (
        f'image:\n  registry: "{CACHE}"\n  repository: docker-hub/bitnami/nginx\n  tag: "1.27"\n'
    )
    assert result.changes == (
        Change(3, "bitnami/nginx:1.27", f"{CACHE}/docker-hub/bitnami/nginx:1.27"),
    )


def test_helm_mapping_under_a_key_ending_in_image() -> None:
    source = (
        "initImage:\n  repository: busybox\n  tag: 1.36\nsidecarimage:\n  repository: busybox\n"
    )
    result = rewrite_text(source, naming())
    assert result.text.count(f"repository: {CACHE}/docker-hub/library/busybox") == 2


def test_a_value_that_cannot_start_a_plain_scalar_is_quoted() -> None:
    source = "image:\n  registry: docker.io\n  repository: nginx\n"
    result = rewrite_text(source, naming("[::1]:5000"))
    assert (
        result.text == 'image:\n  registry: "[::1]:5000"\n  repository: docker-hub/library/nginx\n'
    )
    assert rewrite_text(result.text, naming("[::1]:5000")).changes == ()


@pytest.mark.parametrize(
    "source",
    [
        "",
        "# only a comment\n",
        "---\n---\n",
        "image:\n",
        "image: ~\n",
        "image: 3\n",
        "image: ''\n",
        "image:\n  tag: '1.2'\n  pullPolicy: Always\n",
        "images:\n  - nginx\n",
        "imagePullPolicy: nginx\n",
        "- image\n- nginx\n",
    ],
)
def test_what_is_not_an_image_is_not_touched(source: str) -> None:
    result = rewrite_text(source, naming())
    assert (result.text, result.changes, result.skipped) == (source, (), ())


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(YamlInvalid, match=r"not valid YAML \(line 2, column \d+\): mapping values"):
        rewrite_text("a: b\n c: d: e\n", naming())
    with pytest.raises(YamlInvalid, match="a Helm template"):
        rewrite_text("{{- if .Values.x }}\na: [\n", naming())

"""mirror-config: containerd hosts.toml, Docker daemon.json and registries.conf from rules, and
the paths clients then ask for route to the rule the file was written for."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner, Result

from pullthrough.cache.routing import Router
from pullthrough.cli import mirror as cli_mirror
from pullthrough.client.admin import AdminClient, ClientSettings
from pullthrough.client.mirror_config import (
    CONTAINERD_CERTS_DIR,
    ConfigFile,
    MirrorConfigError,
    containerd_hosts,
    docker_daemon_json,
    merged_daemon_json,
    printed,
    registries_conf,
)
from pullthrough.config import RuleConfig, Settings

CACHE = "http://127.0.0.1:5000"
DEFAULT_RULES = Settings().rules
DEFAULT_HOSTS = [
    "docker.io",
    "ghcr.io",
    "public.ecr.aws",
    "quay.io",
    "registry.gitlab.com",
    "registry.k8s.io",
]


def by_host(files: list[ConfigFile]) -> dict[str, dict[str, Any]]:
    return {str(f.path.parent): tomllib.loads(f.text) for f in files}


def test_containerd_ns_mode_points_every_registry_host_at_the_cache_root() -> None:
    files = containerd_hosts(DEFAULT_RULES, CACHE, "ns")
    assert [str(f.path) for f in files] == [f"{h}/hosts.toml" for h in DEFAULT_HOSTS]
    parsed = by_host(files)
    assert parsed["docker.io"] == {
        "server": "https://registry-1.docker.io",
        "host": {CACHE: {"capabilities": ["pull", "resolve"]}},
    }
    assert parsed["ghcr.io"]["server"] == "https://ghcr.io"
    assert all(list(doc["host"]) == [CACHE] for doc in parsed.values())


def test_containerd_override_path_mode_points_each_host_at_its_rule_prefix() -> None:
    parsed = by_host(containerd_hosts(DEFAULT_RULES, CACHE, "override_path"))
    assert parsed["docker.io"]["host"] == {
        f"{CACHE}/v2/docker-hub": {"capabilities": ["pull", "resolve"], "override_path": True}
    }
    assert list(parsed["quay.io"]["host"]) == [f"{CACHE}/v2/quay"]
    assert parsed["quay.io"]["server"] == "https://quay.io"


def test_docker_hub_hosts_share_one_file_and_mirror_of_adds_hosts() -> None:
    rules = [
        RuleConfig(prefix="hub", upstream="https://registry-1.docker.io", default=True),
        RuleConfig(
            prefix="mirror", upstream="http://127.0.0.1:5001", mirror_of=["quay.io", "Q.IO"]
        ),
        # quay.io is already answered for by the rule above: the first rule keeps it.
        RuleConfig(prefix="quay", upstream="https://quay.io"),
    ]
    parsed = by_host(containerd_hosts(rules, CACHE, "override_path"))
    # mirror_of adds hosts: the rule's upstream's own host keeps its file too.
    assert sorted(parsed) == ["127.0.0.1:5001", "docker.io", "q.io", "quay.io"]
    assert list(parsed["quay.io"]["host"]) == [f"{CACHE}/v2/mirror"]
    assert list(parsed["q.io"]["host"]) == [f"{CACHE}/v2/mirror"]
    assert list(parsed["127.0.0.1:5001"]["host"]) == [f"{CACHE}/v2/mirror"]
    assert parsed["127.0.0.1:5001"]["server"] == "http://127.0.0.1:5001"


def test_fallback_keeps_a_plain_http_upstream_on_http() -> None:
    rules = [RuleConfig(prefix="local", upstream="http://127.0.0.1:5001")]
    parsed = by_host(containerd_hosts(rules, CACHE))
    assert parsed["127.0.0.1:5001"]["server"] == "http://127.0.0.1:5001"
    (registry,) = tomllib.loads(registries_conf(rules, CACHE).text)["registry"]
    assert registry["location"] == "127.0.0.1:5001"
    assert registry["insecure"] is True


def test_an_https_cache_is_verified_and_not_marked_insecure() -> None:
    cache = "https://cache.example.com"
    parsed = by_host(containerd_hosts(DEFAULT_RULES, cache))
    assert list(parsed["docker.io"]["host"]) == [cache]
    assert "skip_verify" not in parsed["docker.io"]["host"][cache]
    assert json.loads(docker_daemon_json(DEFAULT_RULES, cache).text) == {
        "registry-mirrors": [cache]
    }
    mirrors = tomllib.loads(registries_conf(DEFAULT_RULES, cache).text)["registry"][0]["mirror"]
    assert mirrors == [{"location": "cache.example.com/docker-hub"}]


@pytest.mark.parametrize("mode", ["ns", "override_path"])
def test_what_containerd_asks_routes_to_the_rule_the_file_names(mode: str) -> None:
    # containerd asks `<host>/v2/<name>/…?ns=<registry>`; with override_path the host URL's
    # path replaces `/v2`, so the name arrives after the rule's prefix.
    rules = [
        *DEFAULT_RULES,
        RuleConfig(prefix="ghcr/acme", upstream="https://ghcr.io"),
        RuleConfig(prefix="internal", upstream="http://10.0.0.5:5000"),
    ]
    router = Router(rules)
    for file in containerd_hosts(rules, CACHE, "ns" if mode == "ns" else "override_path"):
        registry = str(file.path.parent)
        (host,) = tomllib.loads(file.text)["host"]
        path = host.removeprefix(CACHE)
        name = "team/app" if mode == "ns" else f"{path.removeprefix('/v2/')}/team/app"
        route = router.resolve(name, ns=registry)
        assert registry in {h.replace("registry-1.", "") for h in route.rule.mirror_hosts}
        assert route.upstream_repository == "team/app"


def test_containerd_print_format_names_each_file_then_its_exact_content() -> None:
    files = containerd_hosts(DEFAULT_RULES[:2], CACHE)
    text = printed(files, CONTAINERD_CERTS_DIR)
    sections = text.split("# /etc/containerd/certs.d/")
    assert sections[0] == ""
    assert sections[1] == "docker.io/hosts.toml\n" + files[0].text + "\n"
    assert sections[2] == "ghcr.io/hosts.toml\n" + files[1].text


def test_docker_daemon_json_mirrors_docker_hub_through_the_default_rule() -> None:
    file = docker_daemon_json(DEFAULT_RULES, CACHE)
    assert file.path == PurePosixPath("daemon.json")
    assert json.loads(file.text) == {
        "registry-mirrors": [CACHE],
        "insecure-registries": ["127.0.0.1:5000"],
    }
    # Docker asks the mirror for `library/busybox`, unprefixed and without ns.
    assert Router(DEFAULT_RULES).resolve("library/busybox").rule.prefix == "docker-hub"


def test_docker_needs_the_default_rule_to_be_docker_hub() -> None:
    no_default = [RuleConfig(prefix="hub", upstream="https://registry-1.docker.io")]
    with pytest.raises(MirrorConfigError, match="no rule is the default"):
        docker_daemon_json(no_default, CACHE)
    ghcr_default = [RuleConfig(prefix="ghcr", upstream="https://ghcr.io", default=True)]
    with pytest.raises(MirrorConfigError, match=r"default rule 'ghcr' answers for ghcr\.io"):
        docker_daemon_json(ghcr_default, CACHE)
    listed = [
        RuleConfig(prefix="m", upstream="http://10.0.0.1", default=True, mirror_of=["docker.io"])
    ]
    assert json.loads(docker_daemon_json(listed, CACHE).text)["registry-mirrors"] == [CACHE]


def test_merged_daemon_json_keeps_other_settings() -> None:
    existing = json.dumps(
        {
            "log-driver": "journald",
            "registry-mirrors": ["https://old"],
            "insecure-registries": ["a:1"],
        }
    )
    generated = {"registry-mirrors": [CACHE], "insecure-registries": ["127.0.0.1:5000", "a:1"]}
    assert json.loads(merged_daemon_json(existing, generated)) == {
        "log-driver": "journald",
        "registry-mirrors": [CACHE],
        "insecure-registries": ["a:1", "127.0.0.1:5000"],
    }
    with pytest.raises(MirrorConfigError, match="not valid JSON"):
        merged_daemon_json("{", generated)


def test_registries_conf_mirrors_each_registry_to_its_rule_prefix() -> None:
    document = tomllib.loads(registries_conf(DEFAULT_RULES, CACHE).text)
    registries = {r["prefix"]: r for r in document["registry"]}
    assert sorted(registries) == DEFAULT_HOSTS
    assert registries["docker.io"] == {
        "prefix": "docker.io",
        "location": "docker.io",
        "mirror": [{"location": "127.0.0.1:5000/docker-hub", "insecure": True}],
    }
    assert registries["registry.k8s.io"]["mirror"][0]["location"] == "127.0.0.1:5000/k8s"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:5000", "not an http"),
        ("ftp://cache", "not an http"),
        ("http://cache:5000/v2", "without a path"),
        ("http://user:pw@cache:5000", "without a path or credentials"),
    ],
)
def test_a_bad_cache_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(MirrorConfigError, match=message):
        registries_conf(DEFAULT_RULES, url)


def test_no_rules_say_how_to_add_one() -> None:
    with pytest.raises(MirrorConfigError, match="pullthrough rules"):
        containerd_hosts([], CACHE)


# --- the command line, over a fake admin API ----------------------------------------------


class RulesOnlyAdmin(AdminClient):
    """An AdminClient whose server is a MockTransport answering `GET /api/v1/rules`."""

    def __init__(self, settings: ClientSettings, rules: list[dict[str, Any]]) -> None:
        super().__init__(settings)
        self._http.close()

        def handle(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/api/v1/rules":
                return httpx.Response(200, json={"rules": rules})
            return httpx.Response(404, json={"code": "NOT_FOUND", "message": "no such route"})

        self._http = httpx.Client(base_url=settings.server, transport=httpx.MockTransport(handle))


def api_rule(rule: RuleConfig) -> dict[str, Any]:
    """A rule as the API lists it: every field, plus read-only ones the CLI must ignore."""
    return {
        **rule.model_dump(mode="json"),
        "cache_prefix_url": f"127.0.0.1:5000/{rule.prefix}",
        "created_at": "2026-11-28T17:00:00Z",
        "updated_at": None,
    }


Run = Callable[..., Result]


def mirror_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def group() -> None:
        """A group, so the command is invoked by its name."""

    cli_mirror.register(app)
    return app


@pytest.fixture
def run() -> Run:
    app = mirror_app()
    runner = CliRunner()

    def invoke(*args: str, rules: Sequence[RuleConfig] = DEFAULT_RULES) -> Result:
        listed = [api_rule(rule) for rule in rules]
        return runner.invoke(
            app,
            ["mirror-config", *args],
            obj=lambda settings: RulesOnlyAdmin(settings, listed),
            env={
                "PULLTHROUGH_TOKEN": "",
                "PULLTHROUGH_SERVER": "http://127.0.0.1:5000",
                "PULLTHROUGH_CLIENT_CONFIG": "/nonexistent/client.yaml",
            },
        )

    return invoke


def test_cli_prints_containerd_files_under_their_paths(run: Run) -> None:
    result = run("containerd", "--mode", "override_path")
    assert result.exit_code == 0, result.stderr
    files = containerd_hosts(DEFAULT_RULES, CACHE, "override_path")
    assert result.stdout == printed(files, CONTAINERD_CERTS_DIR)


def test_cli_writes_the_printed_files_with_dir(run: Run, tmp_path: Path) -> None:
    result = run("containerd", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    for file in containerd_hosts(DEFAULT_RULES, CACHE, "ns"):
        assert (tmp_path / file.path).read_text() == file.text
    assert result.stdout.splitlines() == [
        f"wrote {tmp_path / host / 'hosts.toml'}" for host in DEFAULT_HOSTS
    ]


def test_cli_cache_url_overrides_the_server_url(run: Run) -> None:
    result = run("cri-o", "--cache-url", "https://cache.example.com:443")
    assert result.exit_code == 0, result.stderr
    assert 'location = "cache.example.com:443/docker-hub"' in result.stdout
    assert "insecure" not in result.stdout
    assert result.stdout.startswith("# /etc/containers/registries.conf.d/50-pullthrough.conf\n")


def test_cli_docker_prints_bare_json_and_merges_into_an_existing_file(
    run: Run, tmp_path: Path
) -> None:
    result = run("docker")
    assert json.loads(result.stdout)["registry-mirrors"] == [CACHE]
    (tmp_path / "daemon.json").write_text('{"data-root": "/srv/docker"}')
    assert run("docker", "--dir", str(tmp_path)).exit_code == 0
    assert json.loads((tmp_path / "daemon.json").read_text()) == {
        "data-root": "/srv/docker",
        "registry-mirrors": [CACHE],
        "insecure-registries": ["127.0.0.1:5000"],
    }


def test_cli_rules_that_cannot_serve_docker_fail_with_exit_1(run: Run) -> None:
    result = run("docker", rules=[RuleConfig(prefix="ghcr", upstream="https://ghcr.io")])
    assert result.exit_code == 1
    assert result.stderr.startswith("pullthrough: Docker asks a mirror for unprefixed names")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_mode_is_for_containerd_only(run: Run) -> None:
    result = run("docker", "--mode", "ns")
    assert result.exit_code == 2
    assert result.stderr.strip() == "pullthrough: --mode applies to containerd only"


def test_cli_bad_cache_url_is_a_usage_error(run: Run) -> None:
    result = run("containerd", "--cache-url", "cache:5000")
    assert result.exit_code == 2
    assert "cache URL 'cache:5000' is not an http(s) URL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_unreachable_server_fails_in_one_line(tmp_path: Path) -> None:
    args = ["mirror-config", "cri-o", "--server", "http://127.0.0.1:9", "--dir", str(tmp_path)]
    env = {"PULLTHROUGH_TOKEN": "", "PULLTHROUGH_CLIENT_CONFIG": "/nonexistent/client.yaml"}
    result = CliRunner().invoke(mirror_app(), args, env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith("pullthrough: cannot reach http://127.0.0.1:9")
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []

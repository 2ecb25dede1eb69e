"""The deployment files, checked without a cluster or a container engine: the Helm chart rendered
by Helm's own template engine (helm-python-sdk binds Helm's Go SDK) and every document checked
against the Kubernetes schemas (kubernetes-validate ships them); the compose file's services,
and the settings its environment gives each replica, read by the server's own settings loader.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from helm_python import Chart
from helm_python.chart import lint

from pullthrough.access.sealing import SecretKeySource
from pullthrough.access.tokens import load_or_create_key
from pullthrough.config import Settings, load_settings
from tests.rig.compose_file import (
    COMPOSE_FILE,
    REPLICAS,
    ComposeRefused,
    interpolate,
    load_compose,
    service_environment,
)

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
CHART = ROOT / "deploy" / "helm" / "pullthrough"
COMPOSE = COMPOSE_FILE
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
# The oldest Kubernetes release the chart is written for, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
POD_IP = "10.1.2.3"

Document = dict[str, Any]


def image_environment() -> dict[str, str]:
    """The PULLTHROUGH_* variables the image itself sets (ENV in the Containerfile's last
    stage): every container of the image starts with them, under what the pod or service sets."""
    last_stage = re.split(r"^FROM ", CONTAINERFILE.read_text(), flags=re.MULTILINE)[-1]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.*?)(?<!\\)$", last_stage, re.MULTILINE | re.DOTALL):
        for key, value in re.findall(r"(\w+)=(\S+)", block):
            if key.startswith("PULLTHROUGH_"):
                env[key] = value
    assert env, "the image sets PULLTHROUGH_LISTEN and PULLTHROUGH_DATA_DIR"
    return env


# --- Helm ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart() -> Iterator[Chart]:
    with Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Chart, values: dict[str, Any] | None = None) -> list[Document]:
    """Every Kubernetes document the chart renders for an install of release `cache`."""
    manifests = chart.render(values, name="cache", namespace="registry", is_install=True)
    documents: list[Document] = []
    for template, text in sorted(manifests.items()):
        if not template.endswith(".yaml"):
            continue
        documents.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return documents


def one(documents: list[Document], kind: str, name: str | None = None) -> Document:
    found = [
        doc
        for doc in documents
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def container(deployment_or_job: Document) -> Document:
    containers: list[Document] = deployment_or_job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_environment(env: list[Document], secrets: list[Document]) -> dict[str, str]:
    """A container's variables as the kubelet sets them: Secret references resolved (an
    optional one whose key is missing is left out), `$(VAR)` expanded, the pod IP given."""
    by_name = {doc["metadata"]["name"]: doc for doc in secrets}
    resolved: dict[str, str] = image_environment()
    for variable in env:
        name = variable["name"]
        if "value" in variable:
            resolved[name] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: resolved[m.group(1)], variable["value"]
            )
            continue
        source = variable["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "status.podIP"
            resolved[name] = POD_IP
            continue
        ref = source["secretKeyRef"]
        data = by_name[ref["name"]].get("data", {})
        if ref["key"] not in data:
            assert ref.get("optional") is True, f"{name}: {ref['name']} has no {ref['key']}"
            continue
        resolved[name] = base64.b64decode(data[ref["key"]]).decode()
    return resolved


def settings_of_pod(documents: list[Document], tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    """The settings a server container starts with: its ConfigMap file where PULLTHROUGH_CONFIG
    says it is mounted, overridden by its environment."""
    deployment = one(documents, "Deployment")
    server = container(deployment)
    env = pod_environment(server["env"], [d for d in documents if d["kind"] == "Secret"])
    mount = next(m for m in server["volumeMounts"] if m["name"] == "config")
    volume = next(
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"
    )
    config_map = one(documents, "ConfigMap", volume["configMap"]["name"])
    relative = Path(env["PULLTHROUGH_CONFIG"]).relative_to(mount["mountPath"])
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config_map["data"][str(relative)])
    return load_settings(config_file, environ=env), env


def test_chart_lints_clean() -> None:
    report = lint(CHART, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    "values",
    [
        None,
        {"replicaCount": 5, "storage": {"redirect_blobs": True}},
        {
            "secrets": {"existingSecret": "pullthrough-keys"},
            "podDisruptionBudget": {"enabled": False},
            "migrate": {"enabled": False},
        },
    ],
    ids=["defaults", "5-replicas-redirect", "existing-secret"],
)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_document_validates(
    chart: Chart, values: dict[str, Any] | None, version: str
) -> None:
    documents = render(chart, values)
    assert documents
    for doc in documents:
        # Raises ValidationError naming the field; strict: no field the schema lacks.
        kubernetes_validate.validate(doc, version, strict=True)


def test_defaults_make_the_stated_resources(chart: Chart) -> None:
    documents = render(chart)
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for doc in documents)
    assert kinds == [
        ("ConfigMap", "cache-pullthrough"),
        ("Deployment", "cache-pullthrough"),
        ("Job", "cache-pullthrough-migrate"),
        ("PodDisruptionBudget", "cache-pullthrough"),
        ("Secret", "cache-pullthrough"),
        ("Secret", "cache-pullthrough-migrate"),
        ("Service", "cache-pullthrough"),
    ]
    assert one(documents, "Deployment")["spec"]["replicas"] == 3


def test_probes_and_ports(chart: Chart) -> None:
    documents = render(chart)
    server = container(one(documents, "Deployment"))
    assert server["args"] == ["serve"]
    assert server["ports"] == [{"name": "http", "containerPort": 5000, "protocol": "TCP"}]
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert server["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = one(documents, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP"}
    ]


def test_selectors_pick_the_server_pods_only(chart: Chart) -> None:
    documents = render(chart)
    deployment = one(documents, "Deployment")
    server_labels = deployment["spec"]["template"]["metadata"]["labels"]
    migrate_labels = one(documents, "Job")["spec"]["template"]["metadata"]["labels"]

    def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in selector.items())

    pdb = one(documents, "PodDisruptionBudget")
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        one(documents, "Service")["spec"]["selector"],
        pdb["spec"]["selector"]["matchLabels"],
    ):
        assert selects(selector, server_labels)
        assert not selects(selector, migrate_labels)
    assert pdb["spec"]["maxUnavailable"] == 1


def test_secret_holds_what_the_pods_read(chart: Chart, tmp_path: Path) -> None:
    documents = render(chart)
    secret = one(documents, "Secret", "cache-pullthrough")
    assert sorted(secret["data"]) == [
        "PULLTHROUGH_DATABASE_URL",
        "PULLTHROUGH_SECRET_KEY",
        "PULLTHROUGH_TOKEN_KEY",
    ]
    server = container(one(documents, "Deployment"))
    refs = {
        v["name"]: v["valueFrom"]["secretKeyRef"]
        for v in server["env"]
        if "secretKeyRef" in v.get("valueFrom", {})
    }
    assert {name: (ref["name"], ref["key"]) for name, ref in refs.items()} == {
        name: ("cache-pullthrough", name)
        for name in (
            "PULLTHROUGH_DATABASE_URL",
            "PULLTHROUGH_SECRET_KEY",
            "PULLTHROUGH_TOKEN_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        )
    }
    assert refs["AWS_ACCESS_KEY_ID"]["optional"] is True
    assert refs["AWS_SECRET_ACCESS_KEY"]["optional"] is True

    _settings, env = settings_of_pod(documents, tmp_path)
    # The generated keys are keys the server accepts (it reads them from these variables).
    key = SecretKeySource(tmp_path / "data", environ=env).load()
    assert key is not None and len(key.material) == 32
    assert len(load_or_create_key(tmp_path / "data", environ=env)) == 32


def test_s3_credentials_given_reach_the_pods(chart: Chart, tmp_path: Path) -> None:
    values = {"secrets": {"awsAccessKeyId": "AKIDEXAMPLE", "awsSecretAccessKey": "s3cr3t"}}
    documents = render(chart, values)
    secret = one(documents, "Secret", "cache-pullthrough")
    assert "AWS_ACCESS_KEY_ID" in secret["data"] and "AWS_SECRET_ACCESS_KEY" in secret["data"]
    settings, env = settings_of_pod(documents, tmp_path)
    assert env["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE"
    assert env["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"
    assert settings.storage.url == "s3://pullthrough/blobs"


def test_pods_start_with_settings_the_server_accepts(chart: Chart, tmp_path: Path) -> None:
    settings, env = settings_of_pod(render(chart), tmp_path)
    assert settings.listen == "0.0.0.0:5000"
    assert settings.advertised_url == f"http://{POD_IP}:5000"
    assert settings.database_url == "postgresql://pullthrough@postgresql:5432/pullthrough"
    assert settings.storage.url == "s3://pullthrough/blobs"
    assert settings.storage.redirect_blobs is False
    assert settings.workers == 2
    assert settings.auth.enabled is True
    assert env["PULLTHROUGH_DATA_DIR"] == "/var/lib/pullthrough"


def test_five_replicas_with_redirects(chart: Chart, tmp_path: Path) -> None:
    values = {
        "replicaCount": 5,
        "storage": {"redirect_blobs": True, "endpoint": "https://s3.example"},
    }
    documents = render(chart, values)
    assert one(documents, "Deployment")["spec"]["replicas"] == 5
    settings, _env = settings_of_pod(documents, tmp_path)
    assert settings.storage.redirect_blobs is True
    assert settings.storage.endpoint == "https://s3.example"
    assert settings.storage.redirect_ttl == 300


def test_migrate_job_runs_before_install_and_upgrade(chart: Chart, tmp_path: Path) -> None:
    documents = render(chart)
    job = one(documents, "Job")
    hook = job["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    migrate = container(job)
    assert migrate["args"] == ["migrate"]
    assert migrate["image"] == container(one(documents, "Deployment"))["image"]
    # Its database URL comes from a hook Secret made before it (a lower weight), since the
    # release's own Secret does not exist yet before an install.
    (ref,) = [v["valueFrom"]["secretKeyRef"] for v in migrate["env"] if "valueFrom" in v]
    hook_secret = one(documents, "Secret", ref["name"])
    secret_hook = hook_secret["metadata"]["annotations"]
    assert secret_hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(secret_hook["helm.sh/hook-weight"]) < int(hook["helm.sh/hook-weight"])
    env = pod_environment(migrate["env"], [d for d in documents if d["kind"] == "Secret"])
    settings = load_settings(None, environ=env)
    assert settings.database_url == "postgresql://pullthrough@postgresql:5432/pullthrough"


def test_existing_secret_is_used_as_is(chart: Chart) -> None:
    documents = render(chart, {"secrets": {"existingSecret": "pullthrough-keys"}})
    assert [d for d in documents if d["kind"] == "Secret"] == []
    server = container(one(documents, "Deployment"))
    migrate = container(one(documents, "Job"))
    names = {
        v["valueFrom"]["secretKeyRef"]["name"]
        for v in [*server["env"], *migrate["env"]]
        if "secretKeyRef" in v.get("valueFrom", {})
    }
    assert names == {"pullthrough-keys"}


def test_a_missing_database_url_is_refused(chart: Chart) -> None:
    with pytest.raises(Exception, match=r"secrets\.databaseUrl"):
        render(chart, {"secrets": {"databaseUrl": ""}})


# --- Compose ---------------------------------------------------------------------------------

# What a user's .env gives (compose.yaml requires the two keys).
DOT_ENV = {
    "PULLTHROUGH_SECRET_KEY": base64.b64encode(bytes(range(32))).decode(),
    "PULLTHROUGH_TOKEN_KEY": "ab" * 32,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def service_env(service: Document, dot_env: Mapping[str, str]) -> dict[str, str]:
    """A service's container environment: the image's, then the service's."""
    return {**image_environment(), **service_environment(service, dot_env)}


def test_compose_services_and_their_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "s3", "bucket", "migrate", *REPLICAS, "nginx"}
    for name, service in services.items():
        for needed in service.get("depends_on", []):
            assert needed in services, f"{name} depends on {needed}, which is not a service"
    for name in REPLICAS:
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "bucket": {"condition": "service_completed_successfully"},
        }
        assert services[name]["image"] == services["migrate"]["image"]
        assert services[name]["build"] == {"context": "..", "dockerfile": "Containerfile"}
    assert (COMPOSE.parent / services[REPLICAS[0]]["build"]["context"] / "Containerfile").exists()
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert set(services["nginx"]["depends_on"]) == set(REPLICAS)


def test_compose_env_is_settings_the_server_accepts(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    user, password, database = (
        interpolate(postgres[key], {})
        for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
    )
    s3_command = [interpolate(part, {}) for part in services["s3"]["command"]]
    s3_port = s3_command[s3_command.index("--port") + 1].lstrip(":")
    for name in REPLICAS:
        env = service_env(services[name], DOT_ENV)
        # Unknown PULLTHROUGH_* names and bad values fail here, as at the server's start.
        settings = load_settings(None, environ=env)
        assert settings.database_url == f"postgresql://{user}:{password}@postgres:5432/{database}"
        assert settings.advertised_url == f"http://{name}:5000"
        assert settings.storage.url == "s3://pullthrough/blobs"
        assert settings.storage.endpoint == f"http://s3:{s3_port}"
        assert settings.storage.path_style is True
        assert settings.auth.allow_anonymous is True
        assert env["AWS_ACCESS_KEY_ID"] == s3_command[s3_command.index("--access") + 1]
        assert env["AWS_SECRET_ACCESS_KEY"] == s3_command[s3_command.index("--secret") + 1]
        assert SecretKeySource(tmp_path, environ=env).load() is not None
        assert len(load_or_create_key(tmp_path, environ=env)) == 32
    migrate = load_settings(None, environ=service_env(services["migrate"], DOT_ENV))
    assert (
        migrate.database_url
        == load_settings(None, environ=service_env(services[REPLICAS[0]], DOT_ENV)).database_url
    )
    bucket_env = service_env(services["bucket"], DOT_ENV)
    assert bucket_env["AWS_ACCESS_KEY_ID"] == env["AWS_ACCESS_KEY_ID"]
    assert f"http://s3:{s3_port}" in services["bucket"]["command"][0]


def test_compose_refuses_to_start_without_the_keys(compose: dict[str, Any]) -> None:
    with pytest.raises(ComposeRefused, match="PULLTHROUGH_SECRET_KEY"):
        service_env(compose["services"]["pullthrough-1"], {})


def test_nginx_balances_over_the_three_replicas(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["nginx"]["volumes"]
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in mounts
    upstream = re.search(r"upstream pullthrough \{(.*?)\}", NGINX_CONF.read_text(), re.DOTALL)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+([^\s;]+)", upstream.group(1), re.MULTILINE)
    assert servers == [f"{name}:5000" for name in REPLICAS]
    assert compose["services"]["nginx"]["ports"] == ["5000:5000"]

"""Driving the ECR-compatible API as users do: the AWS CLI (`.venv/bin/aws`, with a temporary
configuration so nothing of this machine's leaks in) and boto3, both pointed at a running
server with `--endpoint-url`; and checking every answer against botocore's service model."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore import xform_name
from botocore.config import Config
from botocore.model import Shape

from tests.rig.server import PullthroughServer

REGION = "us-east-1"
AWS_CLI = Path(sys.executable).parent / "aws"


@dataclass(frozen=True)
class AwsKey:
    access_key_id: str
    secret_access_key: str


def create_access_key(server: PullthroughServer, principal: str) -> AwsKey:
    printed = server.command("access-keys", "create", "--user", principal)
    values = dict(line.split("=", 1) for line in printed.splitlines())
    return AwsKey(values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"])


def cli_env(home: Path, key: AwsKey) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    # AWS CLI v1 fetches a parameter that starts with http:// and sends what it got instead
    # (an upstream URL of a plain-HTTP test registry here); v2 and this setting do not.
    (home / "config").write_text("[default]\ncli_follow_urlparam = false\n")
    (home / "credentials").write_text("")
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": key.access_key_id,
        "AWS_SECRET_ACCESS_KEY": key.secret_access_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
        "AWS_MAX_ATTEMPTS": "1",
    }


def run_cli(home: Path, key: AwsKey, endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`aws <args> --endpoint-url <endpoint> --output json`, as a user runs it."""
    return subprocess.run(
        [str(AWS_CLI), *args, "--endpoint-url", endpoint, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(home, key),
        check=False,
    )


class CliClient:
    """One AWS service through the CLI: `call("CreateSecret", Name=…)` runs
    `aws secretsmanager create-secret --cli-input-json '{"Name": …}'`."""

    def __init__(self, service: str, home: Path, key: AwsKey, endpoint: str) -> None:
        self.service, self.home, self.key, self.endpoint = service, home, key, endpoint

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        result = run_cli(
            self.home,
            self.key,
            self.endpoint,
            self.service,
            xform_name(operation, "-"),
            "--cli-input-json",
            json.dumps(params),
        )
        assert result.returncode == 0, f"{operation}: {result.stderr}"
        answer: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {}
        return answer

    def error(self, operation: str, **params: Any) -> str:
        """The CLI's error line for a call that must fail."""
        result = run_cli(
            self.home,
            self.key,
            self.endpoint,
            self.service,
            xform_name(operation, "-"),
            "--cli-input-json",
            json.dumps(params),
        )
        assert result.returncode != 0, f"{operation} succeeded: {result.stdout}"
        return result.stderr


class Boto3Client:
    def __init__(self, service: str, key: AwsKey, endpoint: str) -> None:
        self.service = service
        self.client = boto3.session.Session().client(  # type: ignore[call-overload]
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
            config=Config(retries={"max_attempts": 1}),
        )

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        answer: dict[str, Any] = getattr(self.client, xform_name(operation))(**params)
        answer.pop("ResponseMetadata", None)
        return answer


Client = CliClient | Boto3Client

_MODEL = botocore.session.get_session()


def assert_valid_output(service: str, operation: str, answer: Mapping[str, Any]) -> None:
    """Every key of `answer` is a member of the operation's output shape, of the member's type
    (and enum), and every required member is there, all the way down."""
    model = _MODEL.get_service_model(service).operation_model(operation)
    shape = model.output_shape
    data = {k: v for k, v in answer.items() if k != "ResponseMetadata"}
    if shape is None:
        assert data == {}, f"{operation} has no output, got {data}"
        return
    _check(shape, data, operation)


def _check(shape: Shape, value: Any, path: str) -> None:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), f"{path}: {value!r} is not a structure"
        members = shape.members  # type: ignore[attr-defined]
        for key in value:
            assert key in members, f"{path}.{key} is not a member of {shape.name}"
        for required in shape.required_members:
            assert required in value, f"{path}: required member {required} is missing"
        for key, item in value.items():
            _check(members[key], item, f"{path}.{key}")
    elif kind == "list":
        assert isinstance(value, list), f"{path}: {value!r} is not a list"
        for index, item in enumerate(value):
            _check(shape.member, item, f"{path}[{index}]")  # type: ignore[attr-defined]
    elif kind == "map":
        assert isinstance(value, dict), f"{path}: {value!r} is not a map"
        for key, item in value.items():
            _check(shape.key, key, f"{path} key")  # type: ignore[attr-defined]
            _check(shape.value, item, f"{path}.{key}")  # type: ignore[attr-defined]
    elif kind == "string":
        assert isinstance(value, str), f"{path}: {value!r} is not a string"
        enum = shape.metadata.get("enum")
        if enum:
            assert value in enum, f"{path}: {value!r} is not one of {enum}"
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: {value!r}"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{path}: {value!r} is not a boolean"
    elif kind in ("double", "float"):
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{path}"
    elif kind == "timestamp":
        # boto3 parses it to a datetime; the CLI (v1) prints the wire value, epoch seconds,
        # or ISO 8601 text with cli_timestamp_format = iso8601.
        if isinstance(value, str):
            datetime.datetime.fromisoformat(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            assert value > 0, f"{path}: {value!r} is not a time"
        else:
            assert isinstance(value, datetime.datetime), f"{path}: {value!r} is not a time"
    elif kind == "blob":
        assert isinstance(value, bytes | str), f"{path}: {value!r}"
    else:
        raise AssertionError(f"{path}: no check for shape type {kind}")


def signed_request(
    endpoint: str,
    key: AwsKey,
    target: str | None,
    body: bytes,
    *,
    service: str = "ecr",
    secret: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a request signed by botocore's own SigV4 signer, as the AWS CLI
    signs it (`target` None: a Query-protocol form post)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = (
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        if target is None
        else {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
    )
    request = AWSRequest(method="POST", url=endpoint + "/", data=body, headers=headers)
    credentials = Credentials(key.access_key_id, secret or key.secret_access_key)
    SigV4Auth(credentials, service, REGION).add_auth(request)
    return {k: str(v) for k, v in request.headers.items()}, body

"""An in-memory admin API behind httpx.MockTransport, and an AdminClient that talks to it: the
seam the CLI's unit tests inject as the typer context's `obj`."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import httpx

from pullthrough.client.admin import AdminClient, ClientSettings

NOW = "2026-11-28T17:00:00Z"
RULE_DEFAULTS: dict[str, Any] = {
    "default": False,
    "credential": None,
    "mirror_of": None,
    "tag_ttl": 300.0,
    "max_stale": None,
    "negative_ttl": 30.0,
    "upstream_namespace": None,
    "implicit_namespace": None,
}
DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: Any) -> Any:
    if isinstance(value, str) and value and value[-1] in DURATIONS:
        return float(value[:-1]) * DURATIONS[value[-1]]
    return float(value) if isinstance(value, str) else value


def _error(status: int, code: str, message: str, fields: list[Any] | None = None) -> httpx.Response:
    body = {"code": code, "message": message, "fields": fields or []}
    return httpx.Response(status, json=body)


class FakeAdminServer:
    """The contract's routes the CLI uses, over dictionaries; every request is recorded."""

    def __init__(self) -> None:
        self.rules: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.policy: Any = None
        self.templates: dict[str, dict[str, Any]] = {}
        self.documents: dict[str, Any] = {}  # fixed answers: /status, /repositories, ...
        self.requests: list[httpx.Request] = []
        self.token: str | None = None  # when set, requests without this Authorization get 401

    def client(self, settings: ClientSettings) -> AdminClient:
        return MockAdminClient(settings, httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.token is not None and request.headers.get("Authorization") != self.token:
            return _error(401, "UNAUTHORIZED", "authentication required")
        raw = request.url.raw_path.decode().split("?", 1)[0]
        assert raw.startswith("/api/v1/"), raw
        segments = [unquote(s) for s in raw.removeprefix("/api/v1/").split("/")]
        body = json.loads(request.content) if request.content else None
        collection, name = segments[0], (segments[1] if len(segments) > 1 else None)
        if len(segments) > 2:
            return _error(404, "NOT_FOUND", f"no route {raw}")
        if collection == "rules":
            return self._rules(request.method, name, body)
        if collection == "secrets":
            return self._secrets(request.method, name, body)
        if collection == "registry-policy":
            return self._policy(request.method, body)
        if collection == "templates":
            return self._templates(request.method, name, body)
        key = raw.removeprefix("/api/v1")
        if key in self.documents:
            return httpx.Response(200, json=self.documents[key])
        return _error(404, "NOT_FOUND", f"no repository {request.url.params.get('repository')}")

    def _rules(self, method: str, prefix: str | None, body: Any) -> httpx.Response:
        if prefix is None and method == "GET":
            return httpx.Response(200, json={"rules": [self.rules[p] for p in sorted(self.rules)]})
        if prefix is None and method == "POST":
            if body["prefix"] in self.rules:
                return _error(409, "CONFLICT", f"a rule with prefix {body['prefix']!r} exists")
            self.rules[body["prefix"]] = self._rule(body)
            return httpx.Response(201, json=self.rules[body["prefix"]])
        assert prefix is not None
        if method == "PUT":
            existed = prefix in self.rules
            self.rules[prefix] = self._rule({**body, "prefix": prefix})
            return httpx.Response(200 if existed else 201, json=self.rules[prefix])
        if prefix not in self.rules:
            return _error(404, "NOT_FOUND", f"no rule with prefix {prefix!r}")
        if method == "DELETE":
            del self.rules[prefix]
            return httpx.Response(204)
        return httpx.Response(200, json=self.rules[prefix])

    @staticmethod
    def _rule(body: dict[str, Any]) -> dict[str, Any]:
        unknown = set(body) - {"prefix", "upstream", *RULE_DEFAULTS}
        assert not unknown, unknown
        rule = {**RULE_DEFAULTS, **body}
        for name in ("tag_ttl", "max_stale", "negative_ttl"):
            rule[name] = _seconds(rule[name])
        return {
            **rule,
            "cache_prefix_url": f"cache.test:5000/{body['prefix']}",
            "created_at": NOW,
            "updated_at": NOW,
        }

    def _secrets(self, method: str, name: str | None, body: Any) -> httpx.Response:
        if name is None:
            listing = [{"name": n, "created_at": NOW, "updated_at": NOW} for n in self.secrets]
            return httpx.Response(200, json={"secrets": listing})
        metadata = {"name": name, "created_at": NOW, "updated_at": NOW}
        if method == "PUT":
            existed = name in self.secrets
            self.secrets[name] = dict(body)
            return httpx.Response(200 if existed else 201, json=metadata)
        if name not in self.secrets:
            return _error(404, "NOT_FOUND", f"no secret {name!r}")
        if method == "DELETE":
            del self.secrets[name]
            return httpx.Response(204)
        return httpx.Response(200, json=metadata)

    def _policy(self, method: str, body: Any) -> httpx.Response:
        if method == "PUT":
            self.policy = body
        elif method == "DELETE":
            self.policy = None
            return httpx.Response(204)
        return httpx.Response(200, json={"policy": self.policy, "updated_at": NOW})

    def _templates(self, method: str, prefix: str | None, body: Any) -> httpx.Response:
        if prefix is None:
            listing = [self.templates[p] for p in sorted(self.templates)]
            return httpx.Response(200, json={"templates": listing})
        if method == "PUT":
            policy = body.get("lifecycle_policy")
            if policy is not None and not isinstance(policy.get("rules"), list):
                return _error(
                    400,
                    "INVALID",
                    "invalid template",
                    [{"field": "lifecycle_policy.rules", "message": "must be a list"}],
                )
            self.templates[prefix] = {
                "applied_for": ["PULL_THROUGH_CACHE"],
                "description": None,
                "lifecycle_policy": None,
                "scan_on_pull": False,
                **body,
                "created_at": NOW,
                "updated_at": NOW,
            }
            return httpx.Response(200, json=self.templates[prefix])
        if prefix not in self.templates:
            return _error(404, "NOT_FOUND", f"no template for prefix {prefix!r}")
        if method == "DELETE":
            del self.templates[prefix]
            return httpx.Response(204)
        return httpx.Response(200, json=self.templates[prefix])


class MockAdminClient(AdminClient):
    """The real client (headers, error decoding) over a mock transport."""

    def __init__(self, settings: ClientSettings, transport: httpx.MockTransport) -> None:
        super().__init__(settings)
        headers = self._http.headers
        self._http.close()
        self._http = httpx.Client(base_url=settings.server, headers=headers, transport=transport)

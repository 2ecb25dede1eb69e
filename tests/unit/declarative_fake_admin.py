"""An in-memory admin API (the contract's rules, secrets, templates, registry policy and
scanning endpoints) behind httpx.MockTransport, so plan and apply run through the real
AdminClient without a server. It records every call, to assert order and what was sent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
from pydantic import ValidationError

from pullthrough.access.registry_policy.document import PolicyDocument, PolicyError
from pullthrough.client.admin import API_ROOT, AdminClient, ClientSettings
from pullthrough.config import RuleConfig

SERVER = "http://127.0.0.1:5999"
NOW = "2026-11-28T17:00:00Z"


@dataclass
class FakeAdminServer:
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy: dict[str, Any] | None = None
    scanning: dict[str, Any] = field(default_factory=lambda: {"scan_type": "BASIC", "rules": []})
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, decoded path)
    raw_paths: list[str] = field(default_factory=list)  # as sent, %2F and all
    writes: list[tuple[str, str]] = field(default_factory=list)  # non-GET calls
    responses: list[bytes] = field(default_factory=list)
    refuse: tuple[str, str] | None = None  # (method, path) answered 400

    def client(self) -> AdminClient:
        return FakeAdminClient(ClientSettings(server=SERVER), self)

    def handle(self, request: httpx.Request) -> httpx.Response:
        raw = request.url.raw_path.decode().split("?")[0]
        self.raw_paths.append(raw)
        assert raw.startswith(API_ROOT + "/"), raw
        segments = [unquote(s) for s in raw[len(API_ROOT) + 1 :].split("/")]
        method = request.method
        body = json.loads(request.content) if request.content else None
        self.calls.append((method, "/" + "/".join(segments)))
        if method != "GET":
            self.writes.append(self.calls[-1])
        if self.refuse == self.calls[-1]:
            return self._answer(400, _error("INVALID", "refused by the test", "upstream"))
        status, answer = self._route(method, segments, body)
        return self._answer(status, answer)

    def _answer(self, status: int, answer: Any) -> httpx.Response:
        if status == 204:
            return httpx.Response(204)
        content = json.dumps(answer).encode()
        self.responses.append(content)
        return httpx.Response(status, content=content, headers={"Content-Type": "application/json"})

    def _route(self, method: str, segments: list[str], body: Any) -> tuple[int, Any]:
        kind, name = segments[0], (segments[1] if len(segments) > 1 else None)
        if kind == "rules":
            return self._rules(method, name, body)
        if kind == "secrets":
            return self._secrets(method, name, body)
        if kind == "secret-checks" and method == "POST":
            stored = self.secrets.get(body["name"])
            if stored is None:
                return 404, _error("NOT_FOUND", f"no secret {body['name']}")
            value = {"username": body["username"], "accessToken": body["accessToken"]}
            return 200, {"name": body["name"], "matches": stored == value}
        if kind == "templates":
            return self._templates(method, name, body)
        if kind == "registry-policy":
            if method == "GET":
                return 200, {"policy": self.policy, "updated_at": None}
            if method == "DELETE":
                self.policy = None
                return 204, None
            try:
                self.policy = PolicyDocument.parse(body).to_json()
            except PolicyError as exc:
                return 400, _error("INVALID", str(exc))
            return 200, {"policy": self.policy, "updated_at": NOW}
        if kind == "scanning":
            if method == "PUT":
                self.scanning = body
            return 200, {**self.scanning, "updated_at": NOW}
        return 404, _error("NOT_FOUND", "no such endpoint")

    def _rules(self, method: str, prefix: str | None, body: Any) -> tuple[int, Any]:
        if method == "GET" and prefix is None:
            return 200, {"rules": [self._rule(p) for p in sorted(self.rules)]}
        if method == "DELETE":
            assert prefix is not None
            if self.rules.pop(prefix, None) is None:
                return 404, _error("NOT_FOUND", f"no rule {prefix}")
            return 204, None
        if method in ("POST", "PUT"):
            if method == "PUT":
                body = {**body, "prefix": prefix}
            if method == "POST" and body.get("prefix") in self.rules:
                return 409, _error("CONFLICT", f"rule {body['prefix']} exists")
            try:
                rule = RuleConfig.model_validate(body)
            except ValidationError as exc:
                return 400, _error("INVALID", str(exc.errors()[0]["msg"]))
            others = [p for p, r in self.rules.items() if r["default"] and p != rule.prefix]
            if rule.default and others:
                return 409, _error("CONFLICT", f"rule {others[0]} is already the default")
            created = rule.prefix not in self.rules
            self.rules[rule.prefix] = rule.model_dump(mode="json")
            return (201 if created else 200), self._rule(rule.prefix)
        return 405, _error("METHOD_NOT_ALLOWED", method)

    def _rule(self, prefix: str) -> dict[str, Any]:
        return {
            **self.rules[prefix],
            "cache_prefix_url": f"127.0.0.1:5999/{prefix}",
            "created_at": NOW,
            "updated_at": NOW,
        }

    def _secrets(self, method: str, name: str | None, body: Any) -> tuple[int, Any]:
        if method == "GET" and name is None:
            listing = [_meta(n) for n in sorted(self.secrets)]
            return 200, {"secrets": listing}
        assert name is not None
        if method == "PUT":
            created = name not in self.secrets
            self.secrets[name] = {"username": body["username"], "accessToken": body["accessToken"]}
            return (201 if created else 200), _meta(name)
        if method == "DELETE":
            if self.secrets.pop(name, None) is None:
                return 404, _error("NOT_FOUND", f"no secret {name}")
            return 204, None
        return 405, _error("METHOD_NOT_ALLOWED", method)

    def _templates(self, method: str, prefix: str | None, body: Any) -> tuple[int, Any]:
        if method == "GET" and prefix is None:
            listing = [self._template(p) for p in sorted(self.templates)]
            return 200, {"templates": listing}
        if method == "DELETE":
            assert prefix is not None
            if self.templates.pop(prefix, None) is None:
                return 404, _error("NOT_FOUND", f"no template {prefix}")
            return 204, None
        if method in ("POST", "PUT"):
            key = prefix if method == "PUT" else body["prefix"]
            assert key is not None
            if method == "POST" and key in self.templates:
                return 409, _error("CONFLICT", f"template {key} exists")
            created = key not in self.templates
            self.templates[key] = {
                "prefix": key,
                "description": body.get("description"),
                "applied_for": body.get("applied_for", ["PULL_THROUGH_CACHE"]),
                "lifecycle_policy": body.get("lifecycle_policy"),
                "scan_on_pull": body.get("scan_on_pull", False),
            }
            return (201 if created else 200), self._template(key)
        return 405, _error("METHOD_NOT_ALLOWED", method)

    def _template(self, prefix: str) -> dict[str, Any]:
        return {**self.templates[prefix], "created_at": NOW, "updated_at": NOW}


class FakeAdminClient(AdminClient):
    def __init__(self, settings: ClientSettings, server: FakeAdminServer) -> None:
        super().__init__(settings)
        self._http.close()
        self._http = httpx.Client(
            base_url=settings.server, transport=httpx.MockTransport(server.handle)
        )


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "created_at": NOW, "updated_at": NOW}


def _error(code: str, message: str, field_name: str | None = None) -> dict[str, Any]:
    fields = [{"field": field_name, "message": message}] if field_name else []
    return {"code": code, "message": message, "fields": fields}

"""A small registry push client (httpx, synchronous) for putting fixture images upstream.

It handles the three upstream auth modes the rig runs: anonymous, Basic, and the Docker token
flow (it asks the realm from the 401 challenge for a `pull,push` token and keeps it per
repository). Blobs go up as monolithic uploads: POST to open the upload, PUT with the digest.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

_CHUNK = 1024 * 1024
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Blob:
    """Content by digest: small blobs held as bytes, large ones as a file on disk."""

    digest: str
    size: int
    media_type: str
    path_or_bytes: bytes | Path

    @classmethod
    def of(cls, data: bytes, media_type: str) -> Blob:
        return cls(sha256_digest(data), len(data), media_type, data)

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def read(self) -> bytes:
        """The whole content (for a file-backed blob this reads the file: mind its size)."""
        if isinstance(self.path_or_bytes, bytes):
            return self.path_or_bytes
        return self.path_or_bytes.read_bytes()

    def chunks(self) -> Iterator[bytes]:
        if isinstance(self.path_or_bytes, bytes):
            yield self.path_or_bytes
            return
        with self.path_or_bytes.open("rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk


def basic_authorization(username: str, password: str) -> str:
    """An `Authorization` header value for HTTP Basic."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class PushError(RuntimeError):
    """The registry refused a push; the message carries its status and error body."""


class RegistryPusher:
    """Pushes blobs and manifests to one registry, authenticating as its challenge asks."""

    def __init__(
        self,
        url: str,
        auth: tuple[str, str] | None = None,
        *,
        timeout: float = 120.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._credentials = auth
        self._client = httpx.Client(timeout=timeout)
        self._basic = False
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self._client.close()

    def has_blob(self, repo: str, digest: str) -> bool:
        response = self._request("HEAD", repo, f"/v2/{repo}/blobs/{digest}")
        return response.status_code == 200

    def push_blob(self, repo: str, blob: Blob) -> None:
        """Upload a blob unless the repository already has it."""
        if self.has_blob(repo, blob.digest):
            return
        opened = self._request("POST", repo, f"/v2/{repo}/blobs/uploads/")
        _expect(opened, 202, f"open upload of {blob.digest} to {repo}")
        location = httpx.URL(self.url).join(opened.headers["Location"])
        target = location.copy_merge_params({"digest": blob.digest})
        # An explicit Content-Length makes httpx stream the generator without chunked encoding,
        # so a 256 MiB file is never held in memory.
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)}
        content = blob.path_or_bytes if isinstance(blob.path_or_bytes, bytes) else blob.chunks()
        done = self._request("PUT", repo, str(target), headers=headers, content=content)
        _expect(done, 201, f"upload of {blob.digest} to {repo}")

    def push_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or digest; returns the digest the registry computed."""
        response = self._request(
            "PUT",
            repo,
            f"/v2/{repo}/manifests/{reference}",
            headers={"Content-Type": media_type},
            content=body,
        )
        _expect(response, 201, f"manifest {repo}:{reference}")
        digest: str = response.headers.get("Docker-Content-Digest", "")
        if digest != sha256_digest(body):
            raise PushError(f"{repo}:{reference}: registry says {digest}, body hashes otherwise")
        return digest

    def get_manifest(self, repo: str, reference: str, accept: str) -> httpx.Response:
        return self._request(
            "GET", repo, f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept}
        )

    def delete_manifest(self, repo: str, digest: str) -> None:
        response = self._request("DELETE", repo, f"/v2/{repo}/manifests/{digest}")
        _expect(response, 202, f"delete {repo}@{digest}")

    def _request(
        self,
        method: str,
        repo: str,
        path_or_url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
    ) -> httpx.Response:
        url = path_or_url if path_or_url.startswith("http") else self.url + path_or_url
        all_headers = {**(headers or {}), **self._auth_headers(repo)}
        response = self._client.request(method, url, headers=all_headers, content=content)
        if response.status_code != 401 or not isinstance(content, bytes | None):
            # A streamed body cannot be sent twice; pushes authenticate on the HEAD and POST
            # before it, so its PUT already carries credentials.
            return response
        self._answer_challenge(repo, response.headers.get("WWW-Authenticate", ""))
        all_headers = {**(headers or {}), **self._auth_headers(repo)}
        return self._client.request(method, url, headers=all_headers, content=content)

    def _auth_headers(self, repo: str) -> dict[str, str]:
        if repo in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[repo]}"}
        if self._basic and self._credentials is not None:
            return {"Authorization": basic_authorization(*self._credentials)}
        return {}

    def _answer_challenge(self, repo: str, challenge: str) -> None:
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self._credentials is None:
                raise PushError(f"{self.url} wants Basic credentials and the pusher has none")
            self._basic = True
            return
        if scheme != "bearer":
            raise PushError(f"{self.url}: unsupported challenge {challenge!r}")
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        query = {"service": params.get("service", ""), "scope": f"repository:{repo}:pull,push"}
        auth = httpx.BasicAuth(*self._credentials) if self._credentials else None
        response = self._client.get(params["realm"], params=query, auth=auth)
        _expect(response, 200, f"token from {params['realm']}")
        payload = response.json()
        self._tokens[repo] = str(payload.get("token") or payload["access_token"])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise PushError(f"{what}: HTTP {response.status_code}: {response.text[:2000]}")

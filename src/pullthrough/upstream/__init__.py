"""The upstream registry client: auth challenges, token cache, redirects, retries, rate limits."""

from pullthrough.upstream.blob import UpstreamBlob
from pullthrough.upstream.client import ManifestHead, RegistryClient, UpstreamManifest
from pullthrough.upstream.credentials import (
    Credential,
    CredentialProvider,
    CredentialSource,
    EnvCredentialSource,
    FixedCredential,
)
from pullthrough.upstream.faults import UpstreamTooManyRequests
from pullthrough.upstream.ratelimit import RateLimitState
from pullthrough.upstream.retries import RetryPolicy, UpstreamTimeouts
from pullthrough.upstream.tokens import TokenCache

__all__ = [
    "Credential",
    "CredentialProvider",
    "CredentialSource",
    "EnvCredentialSource",
    "FixedCredential",
    "ManifestHead",
    "RateLimitState",
    "RegistryClient",
    "RetryPolicy",
    "TokenCache",
    "UpstreamBlob",
    "UpstreamManifest",
    "UpstreamTimeouts",
    "UpstreamTooManyRequests",
]

"""What an action of the AWS API works with: the admin API's services (the same stores and
cache), who signed the request, and where the server is reached."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pullthrough.access.registry_policy.document import Principal
from pullthrough.api.access import AccessControl
from pullthrough.api.admin.context import AdminServices
from pullthrough.api.ecr.signature import SignedRequest
from pullthrough.config import AwsApiConfig
from pullthrough.metadata.principals import PrincipalRow


@dataclass(frozen=True)
class Call:
    services: AdminServices
    access: AccessControl | None  # None: authentication is off
    aws: AwsApiConfig
    principal: Principal
    principal_row: PrincipalRow | None  # None when authentication is off
    access_key_id: str | None
    origin: str  # scheme://host the client reached, for URLs in answers
    host: str
    signed: SignedRequest | None = None  # None when authentication is off


Body = Mapping[str, Any]
Reply = dict[str, Any]
Action = Callable[[Call, Body], Awaitable[Reply]]


@dataclass(frozen=True)
class Operation:
    """One action: its handler, and whether it is about one repository (`repositoryName`),
    so the registry policy is asked about that repository rather than the whole registry."""

    handler: Action
    per_repository: bool = False

"""May this principal do this to that repository: the registry policy, kept fresh.

Workers re-read the policy when its `updated_at` changes (checked at most once a second), so a
`policy put` takes effect everywhere without a restart.
"""

from __future__ import annotations

import json
import time

from pullthrough.access.policy import (
    IMPORT_UPSTREAM,
    LIST_REPOSITORIES,
    PULL,
    Decision,
    PolicyDocument,
    Principal,
)
from pullthrough.errors import Denied
from pullthrough.metadata.principals import AccessStore

# Without a stored policy, every authenticated principal may pull and import; anonymous
# callers (when allowed in) may do nothing until a policy says so.
DEFAULT_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "AuthenticatedPrincipalsPullAndImport",
            "Effect": "Allow",
            "Principal": {"User": ["*"], "ApiKey": ["*"]},
            "Action": [PULL, IMPORT_UPSTREAM, LIST_REPOSITORIES],
            "Resource": "*",
        }
    ],
}
_CHECK_SECONDS = 1.0


class Authorizer:
    def __init__(self, store: AccessStore) -> None:
        self._store = store
        self._policy = PolicyDocument.parse(DEFAULT_POLICY)
        self._policy_version: float | None = None
        self._checked_at = 0.0

    async def policy(self) -> PolicyDocument:
        now = time.monotonic()
        if now - self._checked_at >= _CHECK_SECONDS:
            self._checked_at = now
            version = await self._store.policy_updated_at()
            if version != self._policy_version:
                stored = await self._store.policy()
                self._policy = (
                    PolicyDocument.parse(json.loads(stored[0]))
                    if stored
                    else PolicyDocument.parse(DEFAULT_POLICY)
                )
                self._policy_version = version
        return self._policy

    async def decide(self, principal: Principal, action: str, repository: str) -> Decision:
        return (await self.policy()).evaluate(principal, action, repository)

    async def require(self, principal: Principal, action: str, repository: str) -> None:
        decision = await self.decide(principal, action, repository)
        if not decision.allowed:
            raise Denied(decision.explain(principal, action, repository))

    async def allowed(self, principal: Principal, repository: str) -> frozenset[str]:
        return (await self.policy()).allowed_actions(principal, repository)

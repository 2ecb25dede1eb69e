"""May this principal do this to that repository: the registry policy, kept fresh.

Every process re-reads the policy when the ACCESS revision moved (metadata/revisions.py), so a
`policy put` takes effect everywhere within that bound, without a restart.
"""

from __future__ import annotations

import json

from pullthrough.access.registry_policy.document import (
    IMPORT_UPSTREAM,
    LIST_REPOSITORIES,
    PULL,
    Decision,
    PolicyDocument,
    Principal,
)
from pullthrough.access.stamps import RevisionSource
from pullthrough.errors import Denied
from pullthrough.metadata.principals import AccessStore
from pullthrough.metadata.revisions import ACCESS

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


class Authorizer:
    def __init__(self, store: AccessStore, revisions: RevisionSource) -> None:
        self._store = store
        self._revisions = revisions
        self._policy = PolicyDocument.parse(DEFAULT_POLICY)
        self._revision: int | None = None

    async def policy(self) -> PolicyDocument:
        revision = await self._revisions.value(ACCESS)
        if revision != self._revision:
            stored = await self._store.policy()
            policy = PolicyDocument.parse(json.loads(stored[0]) if stored else DEFAULT_POLICY)
            # Another request may have read a newer revision meanwhile: keep the newest.
            if self._revision is None or revision >= self._revision:
                self._policy, self._revision = policy, revision
            return policy
        return self._policy

    async def decide(self, principal: Principal, action: str, repository: str) -> Decision:
        return (await self.policy()).evaluate(principal, action, repository)

    async def require(self, principal: Principal, action: str, repository: str) -> None:
        decision = await self.decide(principal, action, repository)
        if not decision.allowed:
            raise Denied(decision.explain(principal, action, repository))

    async def allowed(self, principal: Principal, repository: str) -> frozenset[str]:
        return (await self.policy()).allowed_actions(principal, repository)

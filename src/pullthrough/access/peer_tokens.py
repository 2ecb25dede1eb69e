"""Tokens one replica shows another to read a blob's fill (`api/peer.py`): an HMAC over the
blob's digest and an expiry a minute away, under a key derived from the token signing key that
every replica shares.

    Authorization: Pullthrough-Peer <expires>.<hex HMAC-SHA256(peer key, "<digest>\\n<expires>")>

The peer key is an HMAC of the token key with a fixed label, so a peer token is never a client
token or a credential stamp, nor the reverse. A token opens one digest only, for
`TOKEN_SECONDS`; the replica checking it allows `CLOCK_SKEW_SECONDS` between the two clocks.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from pullthrough.errors import Unauthorized

SCHEME = "Pullthrough-Peer"
TOKEN_SECONDS = 60
CLOCK_SKEW_SECONDS = 30
_LABEL = b"pullthrough peer fill\0"


class PeerTokens:
    """Signs and checks peer tokens under the shared token key (`load_or_create_key`)."""

    def __init__(self, token_key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(token_key, _LABEL, hashlib.sha256).digest()
        self._clock = clock

    def __repr__(self) -> str:
        return "PeerTokens()"

    def authorization(self, digest: str) -> str:
        """The `Authorization` header value for reading the fill of `digest`."""
        expires = int(self._clock()) + TOKEN_SECONDS
        return f"{SCHEME} {expires}.{self._mac(digest, expires)}"

    def check(self, authorization: str | None, digest: str) -> None:
        """Raise Unauthorized unless `authorization` is a live token for `digest`."""
        scheme, _, token = (authorization or "").partition(" ")
        expires_text, _, mac = token.strip().partition(".")
        if scheme != SCHEME or not expires_text.isdigit() or len(expires_text) > 12:
            raise _refused("it carries no peer token")
        expires = int(expires_text)
        now = self._clock()
        if not hmac.compare_digest(mac, self._mac(digest, expires)):
            raise _refused("its peer token is not signed with this replica's token key")
        late, early = now - expires, expires - now - TOKEN_SECONDS
        if late >= CLOCK_SKEW_SECONDS or early > CLOCK_SKEW_SECONDS:
            raise _refused("its peer token has expired (or the replicas' clocks disagree)")

    def _mac(self, digest: str, expires: int) -> str:
        message = f"{digest}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def _refused(why: str) -> Unauthorized:
    return Unauthorized(
        f"the fills endpoint serves other pullthrough replicas only, and this request was "
        f"refused: {why}. Replicas must share one token key (PULLTHROUGH_TOKEN_KEY)",
        headers={"WWW-Authenticate": SCHEME},
    )

"""Who may trigger a reconcile over HTTP: webhook signatures (pure functions).

A service's `webhook_secret` is checked the way the forges send it:

- GitHub, Gitea, Forgejo: `X-Hub-Signature-256: sha256=HEX`, the HMAC-SHA256 of the body
  keyed with the secret (Gitea and Forgejo also send the bare HEX as `X-Gitea-Signature` /
  `X-Forgejo-Signature`; those are accepted too);
- GitLab: `X-Gitlab-Token: SECRET`, the secret itself.

Every comparison is constant-time. A request passes when it carries at least one of these
headers and every one it carries is right.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping

HUB_HEADER = "x-hub-signature-256"
HEX_HEADERS = ("x-gitea-signature", "x-forgejo-signature")
GITLAB_HEADER = "x-gitlab-token"


class Verdict(enum.Enum):
    OK = "ok"
    MISSING = "missing"  # no signature or token header at all
    BAD = "bad"  # a header is there but does not match


def hub_signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value a forge sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    # header values are decoded as latin-1, so this gives back the bytes on the wire
    return hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode())


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> Verdict:
    """Check a webhook request. `headers` has lower-case names."""
    results: list[bool] = []
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if HUB_HEADER in headers:
        results.append(_same(headers[HUB_HEADER], "sha256=" + mac))
    for name in HEX_HEADERS:
        if name in headers:
            results.append(_same(headers[name], mac))
    if GITLAB_HEADER in headers:
        results.append(_same(headers[GITLAB_HEADER], secret))
    if not results:
        return Verdict.MISSING
    return Verdict.OK if all(results) else Verdict.BAD

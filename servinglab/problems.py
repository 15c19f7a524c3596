"""RFC 9457 problem details: the one error shape both architectures answer with.

Every failure a client can see is a `Problem`; the HTTP layer turns it into an
`application/problem+json` response, so the monolith and the gateway cannot drift apart.
"""

from __future__ import annotations

from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
# A URN rather than a URL: the lab runs offline, and a type must identify, not necessarily resolve.
TYPE_PREFIX = "urn:servinglab:problem:"
# Enough to fix a request, small enough that a hostile batch cannot make the error itself huge.
MAX_LISTED_ERRORS = 20


class Problem(Exception):
    """An error with an HTTP status, a stable machine-readable slug and a human explanation."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ):
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}  # e.g. Retry-After on 503s; not part of the body
        self.extensions = extensions

    def to_dict(self) -> dict[str, Any]:
        body = {
            "type": TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        body.update(self.extensions)
        return body


def invalid_instances(errors: list[dict[str, Any]], total: int) -> Problem:
    shown = errors[:MAX_LISTED_ERRORS]
    more = f" ({total - len(shown)} more not listed)" if total > len(shown) else ""
    return Problem(
        422,
        "invalid-instances",
        "Invalid instances",
        f"{total} problem(s) found in the instances{more}; see 'errors'.",
        errors=shown,
    )


def stage_unavailable(stage: str, reason: str) -> Problem:
    return Problem(
        503,
        "stage-unavailable",
        "Pipeline stage unavailable",
        f"The {stage} stage is not available: {reason}",
    )


def stage_timeout(stage: str, budget_ms: float) -> Problem:
    return Problem(
        504,
        "stage-timeout",
        "Pipeline stage timed out",
        f"The {stage} stage did not answer within its {budget_ms:g} ms deadline.",
    )

"""Optimistic concurrency: every resource has an `ETag` from its version; `If-Match` must still match."""

from __future__ import annotations

from shared.errors import Problem


def etag(version: int) -> str:
    return f'W/"{version}"'


def check_if_match(if_match: str | None, version: int) -> None:
    """Raise 412 when the client edits a version that is no longer current; no header means no check."""
    if if_match is None:
        return
    candidates = {tag.strip() for tag in if_match.split(",")}
    current = etag(version)
    if "*" in candidates or current in candidates or current.removeprefix("W/") in candidates:
        return
    raise Problem(
        412,
        f"The resource changed since you read it (current ETag {current}); fetch it again and retry.",
        slug="stale-version",
        headers={"ETag": current},
    )

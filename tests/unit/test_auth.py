"""Credentials: signed JWTs with roles, hashed API keys; everything else is refused."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest

from shared.auth import ROLE_PERMISSIONS, ROLES, ApiKey, Authenticator, hash_api_key, issue_token
from shared.errors import Problem

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
def authenticator() -> Authenticator:
    return Authenticator(
        jwt_secret=SECRET, api_keys=[ApiKey("crm", hash_api_key("crm-key-123"), ("partner",))]
    )


def test_token_gives_subject_name_roles_and_their_permissions(authenticator: Authenticator) -> None:
    token = issue_token(secret=SECRET, subject="u-1", roles=["supervisor"], name="王经理")
    principal = authenticator.from_token(token)
    assert (principal.subject, principal.name, principal.roles) == (
        "u-1",
        "王经理",
        frozenset({"supervisor"}),
    )
    assert principal.can("pii:read")
    assert not authenticator.from_token(issue_token(secret=SECRET, subject="a", roles=["agent"])).can(
        "pii:read"
    )


def test_unknown_roles_grant_nothing(authenticator: Authenticator) -> None:
    principal = authenticator.from_token(issue_token(secret=SECRET, subject="x", roles=["superuser"]))
    assert principal.roles == frozenset()
    assert principal.permissions == frozenset()


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        (issue_token(secret=SECRET, subject="a", roles=["admin"], ttl=timedelta(seconds=-1)), "expired"),
        (
            issue_token(secret="another-secret-of-sufficient-length!!", subject="a", roles=["admin"]),
            "not valid",
        ),
        ("not.a.token", "not valid"),
    ],
)
def test_bad_tokens_are_401(authenticator: Authenticator, token: str, detail: str) -> None:
    with pytest.raises(Problem) as refused:
        authenticator.from_token(token)
    assert refused.value.status == 401
    assert detail in str(refused.value.detail)


def test_alg_none_is_refused(authenticator: Authenticator) -> None:
    def b64(part: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': 'eve', 'roles': ['admin'], 'exp': 4e9})}."
    with pytest.raises(Problem) as refused:
        authenticator.from_token(unsigned)
    assert refused.value.status == 401


def test_token_without_expiry_is_refused(authenticator: Authenticator) -> None:
    forever = jwt.encode({"sub": "a", "roles": ["admin"]}, SECRET, algorithm="HS256")
    with pytest.raises(Problem):
        authenticator.from_token(forever)


def test_api_keys_are_matched_by_hash(authenticator: Authenticator) -> None:
    principal = authenticator.from_api_key("crm-key-123")
    assert principal.subject == "api-key:crm"
    assert principal.can("contacts:write")
    with pytest.raises(Problem):
        authenticator.from_api_key("crm-key-124")


def test_every_role_has_permissions() -> None:
    assert set(ROLES) == set(ROLE_PERMISSIONS)
    assert all(ROLE_PERMISSIONS[role] for role in ROLES)

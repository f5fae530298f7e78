"""Who is calling: JWT bearer tokens (HS256 in dev, JWKS in production) or hashed API keys."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import Problem

ROLES = (
    "agent",
    "supervisor",
    "engineer",
    "account_exec",
    "account_director",
    "creative_director",
    "media_planner",
    "analyst",
    "admin",
    "partner",
)

# Permissions are `<resource>:<action>`. A route asks for a permission, never for a role, so who may do
# what is decided here in one table.
_SERVICE_DESK = {
    "customers:read",
    "customers:write",
    "contacts:read",
    "contacts:write",
    "tickets:read",
    "tickets:write",
}
_AGENCY = {
    "clients:read",
    "clients:write",
    "briefs:read",
    "briefs:write",
    "proposals:read",
    "proposals:write",
    "estimates:read",
    "estimates:write",
    "meetings:read",
    "meetings:write",
}
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "agent": frozenset(_SERVICE_DESK | {"metrics:read"}),
    "supervisor": frozenset(
        _SERVICE_DESK
        | {
            "pii:read",
            "tickets:escalate",
            "metrics:read",
            "sla:read",
            "sla:write",
            "classification:write",
            "webhooks:write",
        }
    ),
    "engineer": frozenset({"customers:read", "tickets:read", "tickets:write", "contacts:read"}),
    "account_exec": frozenset(_AGENCY),
    "account_director": frozenset(_AGENCY | {"briefs:approve", "metrics:read"}),
    "creative_director": frozenset(_AGENCY | {"briefs:approve"}),
    "media_planner": frozenset(
        {"clients:read", "briefs:read", "briefs:write", "proposals:read", "estimates:read"}
    ),
    "analyst": frozenset({"metrics:read", "sla:read", "tickets:read", "briefs:read", "clients:read"}),
    "admin": frozenset(
        _SERVICE_DESK
        | _AGENCY
        | {
            "pii:read",
            "tickets:escalate",
            "briefs:approve",
            "metrics:read",
            "sla:read",
            "sla:write",
            "audit:read",
            "webhooks:write",
            "classification:write",
        }
    ),
    # Other company systems: they feed contacts and read what partners build on.
    "partner": frozenset(
        {"contacts:write", "contacts:read", "customers:read", "tickets:read", "metrics:read"}
    ),
}


@dataclass(frozen=True)
class Principal:
    subject: str
    name: str
    roles: frozenset[str]
    via: str  # "jwt" or "api_key"
    permissions: frozenset[str] = field(default_factory=frozenset)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @classmethod
    def of(cls, subject: str, name: str, roles: Iterable[str], via: str) -> Principal:
        known = frozenset(r for r in roles if r in ROLE_PERMISSIONS)
        granted = frozenset().union(*(ROLE_PERMISSIONS[r] for r in known)) if known else frozenset()
        return cls(subject, name, known, via, granted)


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: str
    roles: tuple[str, ...]


class Authenticator:
    """Verifies credentials for one service; built from settings at start-up."""

    def __init__(
        self,
        *,
        jwt_secret: str,
        jwks_url: str | None = None,
        audience: str | None = None,
        api_keys: Iterable[ApiKey] = (),
    ) -> None:
        self.jwt_secret = jwt_secret
        self.audience = audience
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self.api_keys = {key.sha256: key for key in api_keys}

    def from_token(self, token: str) -> Principal:
        try:
            if self.jwks is not None:
                signing_key: Any = self.jwks.get_signing_key_from_jwt(token).key
                algorithms = ["RS256", "ES256", "EdDSA"]
            else:
                signing_key, algorithms = self.jwt_secret, ["HS256"]
            claims = jwt.decode(
                token,
                signing_key,
                algorithms=algorithms,
                audience=self.audience,
                options={"require": ["sub", "exp"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("The token has expired.") from None
        except (jwt.InvalidTokenError, jwt.PyJWKClientError):
            raise _unauthorized("The token is not valid.") from None
        roles = claims.get("roles", [])
        if not isinstance(roles, list):
            raise _unauthorized("The token's roles claim must be a list.")
        return Principal.of(str(claims["sub"]), str(claims.get("name", claims["sub"])), roles, "jwt")

    def from_api_key(self, presented: str) -> Principal:
        digest = hashlib.sha256(presented.encode()).hexdigest()
        for known_digest, key in self.api_keys.items():
            if hmac.compare_digest(known_digest, digest):
                return Principal.of(f"api-key:{key.name}", key.name, key.roles, "api_key")
        raise _unauthorized("The API key is not valid.")


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_token(
    *,
    secret: str,
    subject: str,
    roles: Iterable[str],
    name: str | None = None,
    ttl: timedelta = timedelta(hours=12),
) -> str:
    """A dev token signed with the HS256 secret (`python -m services token`)."""
    now = datetime.now(UTC)
    claims = {"sub": subject, "name": name or subject, "roles": list(roles), "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="kefu"'})


_bearer = HTTPBearer(auto_error=False, description="JWT with claims sub, name, roles.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key of another company system.")


async def current_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    authenticator: Authenticator = request.app.state.runtime.authenticator
    if bearer is not None and bearer.credentials:
        principal = authenticator.from_token(bearer.credentials)
    elif api_key:
        principal = authenticator.from_api_key(api_key)
    else:
        raise _unauthorized("Credentials are required: a Bearer token or an X-API-Key.")
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(permission: str) -> Any:
    """A dependency granting access only to principals holding `permission` (403 otherwise)."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            raise Problem(403, f"This action needs the {permission!r} permission.", slug="forbidden")
        return principal

    return Depends(check)

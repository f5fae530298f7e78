"""Who is calling: JWT bearer tokens (HS256 in dev, JWKS in production) or hashed API keys."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import Problem
from shared.ratelimit import WRITE_METHODS, WriteLimiter, too_many_writes

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


# Verified tokens are remembered: a client sends the same token on every request, and checking its
# signature costs more than the rest of a small request's authentication. An entry lasts until the token
# expires, and no longer than a JWKS client keeps its keys, so a rotated key is noticed as before.
TOKEN_CACHE_SECONDS = 300.0
TOKEN_CACHE_SIZE = 4096


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
        self._verified: dict[str, tuple[Principal, float]] = {}

    def from_token(self, token: str) -> Principal:
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._verified[token]
        principal, expires = self._verify(token)
        if len(self._verified) >= TOKEN_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, min(expires, now + TOKEN_CACHE_SECONDS))
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        """The principal a token names and when it expires; every failure is a 401."""
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
        principal = Principal.of(str(claims["sub"]), str(claims.get("name", claims["sub"])), roles, "jwt")
        return principal, float(claims["exp"])

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
    response: Response,
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
    limiter: WriteLimiter | None = getattr(request.app.state, "write_limiter", None)
    if limiter is not None and request.method in WRITE_METHODS:
        # Charged to the verified identity, so nobody can spend another caller's budget with a forged token.
        decision = limiter.take(f"{principal.via}:{principal.subject}")
        if not decision.allowed:
            raise too_many_writes(decision)
        response.headers.update(decision.headers())
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(permission: str) -> Any:
    """A dependency granting access only to principals holding `permission` (403 otherwise)."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            raise Problem(403, f"This action needs the {permission!r} permission.", slug="forbidden")
        return principal

    return Depends(check)

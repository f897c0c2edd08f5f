"""Bearer tokens for the citizen interface and the analysts: HS256 JWT, pure and synchronous.

A token names one principal: ``sub`` (for a citizen: the person's canonical identity
number), ``role`` ("citizen" or "analyst"), ``iat``, ``exp`` and ``iss`` = "tkonto". It is
signed with the one HS256 secret from settings (``TKONTO_JWT_SECRET``).

``verify`` answers with a ``Principal`` or raises ``AuthError`` carrying the HTTP status:

- 401: no ``Authorization`` header, not ``Bearer <token>``, a malformed token, a bad
  signature (or any algorithm but HS256), an expired token, a wrong issuer, a missing claim;
- 403: a valid token whose role is not the one the endpoint requires.

Messages never contain an identity number in clear (``identity.mask`` where one is needed);
they are safe to return to the client and to log.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import jwt

from .identity import is_valid, mask

ISSUER = "tkonto"
ALGORITHM = "HS256"
ROLES = ("citizen", "analyst")
REQUIRED_CLAIMS = ("sub", "role", "iat", "exp", "iss")


class AuthError(Exception):
    """A request that may not proceed: ``status`` is 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"AuthError({self.status}, {self.message!r})"


class AuthConfigError(ValueError):
    """The server cannot issue or check tokens (no secret configured): a deployment error."""


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str

    def __repr__(self) -> str:  # log-safe
        return f"Principal(subject={mask(self.subject)!r}, role={self.role!r})"


def _check_secret(secret: str) -> None:
    if not isinstance(secret, str) or not secret:
        raise AuthConfigError(
            "no JWT secret configured: set TKONTO_JWT_SECRET (32 bytes or more) to issue and check bearer tokens")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")


def issue_token(secret: str, subject: str, role: str, ttl_seconds: int, now: dt.datetime | None = None) -> str:
    """A signed token for ``subject`` in ``role``, valid ``ttl_seconds`` from ``now`` (UTC)."""
    _check_secret(secret)
    _check_role(role)
    if not subject:
        raise ValueError("a token needs a subject")
    if role == "citizen" and not is_valid(subject):
        raise ValueError(f"citizen token subject {mask(subject)} is not a valid identity number")
    if not isinstance(ttl_seconds, int) or ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be a positive whole number, not {ttl_seconds!r}")
    now = now or dt.datetime.now(dt.timezone.utc)
    iat = int(now.timestamp())
    claims = {"sub": subject, "role": role, "iat": iat, "exp": iat + ttl_seconds, "iss": ISSUER}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def bearer_token(header_value: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value, or AuthError(401)."""
    if header_value is None or not header_value.strip():
        raise AuthError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    parts = header_value.strip().split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise AuthError(401, "malformed Authorization header: expected 'Bearer <token>'")
    return parts[1]


def verify_token(secret: str, token: str | None, required_role: str, now: dt.datetime | None = None) -> Principal:
    """Check a bare token (e.g. from a cookie or the login form) like ``verify`` does."""
    _check_secret(secret)
    _check_role(required_role)
    if not token:
        raise AuthError(401, "missing bearer token")
    options = {"require": list(REQUIRED_CLAIMS)}
    try:
        if now is not None:
            # PyJWT checks exp against the wall clock; for a given ``now`` check it here.
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={**options, "verify_exp": False, "verify_iat": False})
            if not isinstance(claims["exp"], (int, float)) or claims["exp"] <= now.timestamp():
                raise jwt.ExpiredSignatureError("Signature has expired")
        else:
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options=options)
    except jwt.ExpiredSignatureError:
        raise AuthError(401, "token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError(401, "token signature is not valid") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError(401, f"token algorithm not accepted; only {ALGORITHM}") from None
    except jwt.InvalidIssuerError:
        raise AuthError(401, f"token issuer is not {ISSUER!r}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(401, f"token lacks the {exc.claim!r} claim") from None
    except jwt.DecodeError:
        raise AuthError(401, "malformed token") from None
    except jwt.InvalidTokenError as exc:  # immature iat, bad claim types, ...
        raise AuthError(401, f"token not valid: {type(exc).__name__}") from None
    subject, role = claims["sub"], claims["role"]
    if not isinstance(subject, str) or not subject:
        raise AuthError(401, "token subject is empty")
    if role not in ROLES:
        raise AuthError(401, "token role is unknown")
    if role == "citizen" and not is_valid(subject):
        raise AuthError(401, f"token subject {mask(subject)} is not a valid identity number")
    if role != required_role:
        raise AuthError(403, f"a {role} token may not use this resource; it needs the {required_role} role")
    return Principal(subject, role)


def verify(secret: str, header_value: str | None, required_role: str, now: dt.datetime | None = None) -> Principal:
    """The principal of an ``Authorization`` header value that must carry ``required_role``."""
    _check_secret(secret)
    return verify_token(secret, bearer_token(header_value), required_role, now=now)


__all__ = ["AuthError", "AuthConfigError", "Principal", "issue_token", "verify", "verify_token", "bearer_token",
           "ISSUER", "ROLES"]

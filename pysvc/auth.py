"""Verifies Supabase access tokens locally: HS256 with the project's JWT secret, or ES256/RS256
against its JWKS (keys cached, refetched for an unknown `kid`). The user is the token's `sub`,
never a field of a request body.

A client reuses its access token for up to an hour, so tokens already verified are remembered
(`VerifiedTokens`: keyed by the whole token, never past its `exp`, bounded): a customer's polls do not
pay for the signature again (docs/benchmarks.md, path S)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections import OrderedDict
from typing import Any
from uuid import UUID

import jwt

from pysvc.errors import AuthUnavailable, Unauthenticated
from pysvc.settings import Settings

ASYMMETRIC = ("ES256", "RS256")


def algorithm(token: str) -> object:
    """The `alg` of a token's header, read without PyJWT's full parse of the token (which verification
    then does once); the header is not trusted beyond choosing which key may verify the token."""
    segment = token.partition(".")[0]
    try:
        header: Any = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise Unauthenticated("invalid token: its header is not base64url JSON") from exc
    return header.get("alg") if isinstance(header, dict) else None


class VerifiedTokens:
    """Tokens that verified, with their user and `exp`: a hit is only a token that is the same string and
    has not expired. At most `size` entries; when full, the oldest entry goes first."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._users: OrderedDict[str, tuple[UUID, float]] = OrderedDict()  # oldest first, O(1) to drop

    def get(self, token: str) -> UUID | None:
        found = self._users.get(token)
        if found is None:
            return None
        if found[1] <= time.time():
            del self._users[token]
            return None
        return found[0]

    def put(self, token: str, user: UUID, expires_at: float) -> None:
        if self.size <= 0:
            return
        while len(self._users) >= self.size:
            self._users.popitem(last=False)
        self._users[token] = (user, expires_at)


class TokenVerifier:
    def __init__(self, settings: Settings, *, cache_size: int = 10_000) -> None:
        self.secret = settings.supabase_jwt_secret.get_secret_value() if settings.supabase_jwt_secret else None
        self.jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, timeout=5) if settings.jwks_url else None
        self.verified = VerifiedTokens(cache_size)

    async def user_id(self, token: str) -> UUID:
        known = self.verified.get(token)
        if known is not None:
            return known
        user, expires_at = await self._verify(token)
        self.verified.put(token, user, expires_at)
        return user

    async def _verify(self, token: str) -> tuple[UUID, float]:
        alg = algorithm(token)
        try:
            if alg == "HS256" and self.secret:
                key: object = self.secret
            elif alg in ASYMMETRIC and self.jwks:
                key = (await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)).key
            else:
                raise Unauthenticated("token signed with an algorithm this service does not accept")
            claims = jwt.decode(
                token, key,  # type: ignore[arg-type]
                algorithms=[str(alg)],
                audience="authenticated",
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthUnavailable() from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        if claims.get("role") != "authenticated":
            raise Unauthenticated("not a signed-in user's token")
        try:
            return UUID(str(claims["sub"])), float(claims["exp"])
        except (ValueError, TypeError) as exc:
            raise Unauthenticated("token subject is not a user id") from exc

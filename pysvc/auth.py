"""Verifies Supabase access tokens locally: HS256 with the project's JWT secret, or ES256/RS256
against its JWKS (keys cached, refetched for an unknown `kid`). The user is the token's `sub`,
never a field of a request body."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
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


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.secret = settings.supabase_jwt_secret.get_secret_value() if settings.supabase_jwt_secret else None
        self.jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, timeout=5) if settings.jwks_url else None

    async def user_id(self, token: str) -> UUID:
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
            return UUID(str(claims["sub"]))
        except ValueError as exc:
            raise Unauthenticated("token subject is not a user id") from exc

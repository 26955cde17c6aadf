"""Verifies Supabase access tokens locally: HS256 with the project's JWT secret, or ES256/RS256
against its JWKS. The customer is the token's `sub`, never a field of a request body."""

from __future__ import annotations

import asyncio
from uuid import UUID

import jwt

from pysvc.errors import PysvcError
from pysvc.settings import Settings


class Unauthenticated(PysvcError):
    """No valid Supabase access token: HTTP 401."""


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.secret = settings.supabase_jwt_secret.get_secret_value() if settings.supabase_jwt_secret else None
        self.jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True) if settings.jwks_url else None

    async def customer_id(self, token: str) -> UUID:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") == "HS256" and self.secret:
                key: object = self.secret
            elif header.get("alg") in ("ES256", "RS256") and self.jwks:
                jwks = self.jwks
                key = (await asyncio.to_thread(jwks.get_signing_key_from_jwt, token)).key
            else:
                raise Unauthenticated("token signed with an unsupported algorithm")
            claims = jwt.decode(
                token, key,  # type: ignore[arg-type]
                algorithms=["HS256", "ES256", "RS256"],
                audience="authenticated",
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        if claims.get("role") != "authenticated":
            raise Unauthenticated("not a signed-in user's token")
        try:
            return UUID(str(claims["sub"]))
        except ValueError as exc:
            raise Unauthenticated("token subject is not a user id") from exc

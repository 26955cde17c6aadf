"""Verified access tokens are remembered, so a customer's polls skip the signature check: never past a
token's `exp`, only for the very same token string, and never more than the cache's size."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from pysvc.auth import TokenVerifier, VerifiedTokens
from pysvc.errors import Unauthenticated
from pysvc.local.stack import mint_key
from pysvc.settings import Settings

SECRET = "a-test-jwt-secret-that-is-long-enough-for-hs256"


def verifier(**kwargs: int) -> TokenVerifier:
    settings = Settings(_env_file=None, supabase_rest_url="http://127.0.0.1:1",  # type: ignore[call-arg]
                        supabase_service_role_key="unused", supabase_jwt_secret=SECRET)
    return TokenVerifier(settings, **kwargs)


def token(user: uuid.UUID, lifetime: int = 3600) -> str:
    return mint_key(SECRET, "authenticated", sub=str(user), aud="authenticated", lifetime=lifetime)


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    tokens, user = verifier(), uuid.uuid4()
    short = token(user, lifetime=1)
    assert asyncio.run(tokens.user_id(short)) == user
    time.sleep(max(0.0, tokens.verified._users[short][1] - time.time()) + 0.05)

    with pytest.raises(Unauthenticated, match="expired"):
        asyncio.run(tokens.user_id(short))


def test_a_token_differing_from_a_remembered_one_is_verified_on_its_own() -> None:
    tokens, user = verifier(), uuid.uuid4()
    good = token(user)
    asyncio.run(tokens.user_id(good))
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")

    with pytest.raises(Unauthenticated):
        asyncio.run(tokens.user_id(tampered))


def test_the_cache_keeps_at_most_its_size_dropping_the_oldest() -> None:
    cache = VerifiedTokens(size=2)
    users = [uuid.uuid4() for _ in range(3)]
    later = time.time() + 60
    for n, user in enumerate(users):
        cache.put(f"token{n}", user, later)

    assert (cache.get("token0"), cache.get("token1"), cache.get("token2")) == (None, users[1], users[2])

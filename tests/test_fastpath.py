"""The hot route's fast path (pysvc.fastpath) answers exactly as its FastAPI declaration would: the
same statuses, bodies and headers, for a created session and for every kind of refusal."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pysvc.settings import Settings
from tests.utils.app import running_api
from tests.utils.stripe import bearer

Token = Callable[[uuid.UUID], str]
REFUSALS: dict[str, dict[str, Any]] = {
    "no token": {"json": {"plan": "free"}, "token": False},
    "not a bearer token": {"json": {"plan": "free"}, "headers": {"Authorization": "Basic abc"}},
    "malformed JSON": {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    "malformed JSON, no token": {"content": b"{no", "headers": {"Content-Type": "application/json"}, "token": False},
    "JSON without a content type": {"content": b'{"plan": "free"}'},
    "JSON nested too deep": {"content": b"[" * 30000 + b"]" * 30000, "headers": {"Content-Type": "application/json"}},
    "a body that is not UTF-8": {"content": b"}9\xc4.\x17}\xff\xfe", "headers": {"Content-Type": "application/json"}},
    "JSON sent as text": {"content": b'{"plan": "free"}', "headers": {"Content-Type": "text/plain"}},
    "a JSON subtype": {"content": b'{"plan": "gold"}', "headers": {"Content-Type": "application/vnd.x+json"}},
    "empty body": {"content": b""},
    "a field of the wrong type": {"json": {"plan": "free", "urgent": "very"}},
    "an unknown field": {"json": {"plan": "free", "customer_id": str(uuid.uuid4())}},
    "a plan that is not offered": {"json": {"plan": "gold"}},
    "a body that is not an object": {"json": ["free"]},
}


@pytest.fixture(scope="module")
def framework(stripe_settings: Settings) -> Iterator[httpx.Client]:
    with running_api(stripe_settings, fast_path=False) as base_url, httpx.Client(base_url=base_url) as client:
        yield client


def post(client: httpx.Client, token: str, case: dict[str, Any]) -> httpx.Response:
    headers = {**(bearer(token) if case.get("token", True) else {}), **case.get("headers", {})}
    body = {"json": case["json"]} if "json" in case else {"content": case["content"]}
    return client.post("/api/intake/start", headers=headers, **body)


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refused_intake_is_answered_as_the_framework_answers_it(
    api: httpx.Client, framework: httpx.Client, make_user: Callable[[], uuid.UUID], user_token: Token,
    case: dict[str, Any],
) -> None:
    fast, slow = (post(client, user_token(make_user()), case) for client in (api, framework))

    assert (fast.status_code, fast.json()) == (slow.status_code, slow.json())
    assert fast.headers.get("www-authenticate") == slow.headers.get("www-authenticate")
    assert fast.headers["content-type"] == slow.headers["content-type"]


def test_a_created_session_is_answered_as_the_framework_answers_it(
    api: httpx.Client, framework: httpx.Client, make_user: Callable[[], uuid.UUID], user_token: Token,
) -> None:
    intake = {"plan": "free", "concern": "brakes squeal", "vehicle_year": 2015}
    fast, slow = (post(client, user_token(make_user()), {"json": intake}) for client in (api, framework))

    assert fast.status_code == slow.status_code == 200
    assert set(fast.json()) == set(slow.json()) == {"redirect", "intakeId", "sessionId"}
    assert fast.headers["content-type"] == slow.headers["content-type"]
    assert fast.headers["x-request-id"] and slow.headers["x-request-id"]

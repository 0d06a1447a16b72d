"""The rate limit holds across replicas when its buckets live in Redis (``rate_limit_redis_url``).

Three ``sandbox serve`` processes share one state store and one Redis; one analyst's requests,
spread over all three, are admitted at most ``rate_limit_per_minute`` times (plus the refill while
the test runs), the rest refused with 429 and ``Retry-After``. Without Redis each process would
admit the full allowance (three times as many). Redis away: 503, never an unlimited gateway.
Skipped, saying so, when no Redis answers on 127.0.0.1:6379.
"""

from __future__ import annotations

import time
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import redis
from cluster_support import replicas

from sandbox.api.limits import SharedRateLimiter
from sandbox.control import ControlPlane
from sandbox.errors import RateLimited, StoreUnavailable
from sandbox.principals import Role
from sandbox.settings import Settings
from sandbox.store import migrate

REDIS = "redis://127.0.0.1:6379/0"
PER_MINUTE = 30

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS}: the shared rate limit needs one")
    return REDIS


def test_one_bucket_for_every_replica(redis_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home)
    migrate.upgrade(settings.state_db_url)
    analyst = f"rate-{uuid4().hex[:8]}"  # a bucket no other run shares
    with ControlPlane(settings) as control:
        control.add_user(analyst, [Role.ANALYST], "acme", actor="test")
        token = control.issue_token(analyst, actor="test").token
    environment = {
        "SANDBOX_RATE_LIMIT_PER_MINUTE": str(PER_MINUTE),
        "SANDBOX_RATE_LIMIT_REDIS_URL": redis_url,
    }
    with replicas(home, environment, 3) as (urls, _processes):
        started = time.monotonic()
        responses = []
        for i in range(3 * PER_MINUTE):
            with httpx.Client(base_url=urls[i % 3], headers={"Authorization": f"Bearer {token}"}) as client:
                responses.append(client.get("/api/v1/me"))
        elapsed = time.monotonic() - started
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(admitted) + len(refused) == len(responses)
    refill = int(elapsed * PER_MINUTE / 60) + 1
    assert PER_MINUTE <= len(admitted) <= PER_MINUTE + refill, (len(admitted), elapsed)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert {r.json()["error"]["code"] for r in refused} == {"request.rate_limited"}


def test_limiter_refuses_when_empty_and_when_redis_is_away(redis_url: str) -> None:
    limiter = SharedRateLimiter(redis_url, 2, prefix=f"sandbox:test:{uuid4().hex}:")
    limiter.check("x")
    limiter.check("x")
    with pytest.raises(RateLimited) as refused:
        limiter.check("x")
    assert refused.value.details["retry_after_seconds"] >= 1
    limiter.check("y")  # another principal, another bucket
    away = SharedRateLimiter("redis://127.0.0.1:9/0", 2)
    with pytest.raises(StoreUnavailable) as unavailable:
        away.check("x")
    assert unavailable.value.details["retry_after_seconds"] == 2

"""The broker contract's fixtures: `env` runs a test once per broker implementation (in-process,
Redis; see broker_env.py), `broker` is that environment's broker. Test modules that define their
own `env` (the API and worker tests) use theirs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from broker_env import BROKER_KINDS, BrokerEnv, open_env

from server.broker import Broker


@pytest.fixture(params=BROKER_KINDS)
async def env(request: pytest.FixtureRequest) -> AsyncIterator[BrokerEnv]:
    async for e in open_env(request.param):
        yield e


@pytest.fixture
def broker(env: BrokerEnv) -> Broker:
    return env.broker

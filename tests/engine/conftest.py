from __future__ import annotations

import pytest
import torch

from engine.generator import Generator


@pytest.fixture(scope="session")
def test_gen() -> Generator:
    """The micro `test` preset with seeded random weights (rolling 9-frame cache, sink 3)."""
    torch.manual_seed(0)
    return Generator.from_preset("test")


@pytest.fixture(scope="session")
def global_gen() -> Generator:
    """The `test` preset with a global cache of 12 latent frames."""
    return Generator.from_config(
        Generator.from_preset("test").config.replace(
            cache={"mode": "global", "max_frames": 12, "sink_frames": 0}
        )
    )


@pytest.fixture
def one_thread():  # type: ignore[no-untyped-def]
    """Micro tensors: on a loaded 2-core machine a second OpenMP thread only adds waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

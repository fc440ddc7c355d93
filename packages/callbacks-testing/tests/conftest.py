from __future__ import annotations

from collections.abc import Iterator

import pytest

from trainer_callbacks.testing.real_trainer import checkpoint_saves_a_second_apart


@pytest.fixture
def fast_real_trainer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make real ``Trainer`` runs on the tiny model cheap and their checkpoint rotation independent of speed.

    One torch thread and no full ``gc.collect`` per ``train()``: neither changes what callbacks
    see: on a 2-core machine shared with other test processes torch's thread pool costs ~10 ms
    per tiny op, and accelerate's ``free_memory`` at every ``train()`` start runs a full garbage
    collection (~0.5 s with hypothesis loaded); on CPU it does nothing else. Checkpoint folders
    get the simulator's clock (saves a second apart, see ``checkpoint_saves_a_second_apart``), so
    which checkpoint rotation keeps does not depend on how fast the machine is.
    """
    import accelerate.utils.memory
    import torch
    import transformers

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(accelerate.utils.memory, "clear_device_cache", lambda garbage_collection=False: None)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    with checkpoint_saves_a_second_apart():
        yield
    transformers.logging.set_verbosity(verbosity)
    torch.set_num_threads(threads)

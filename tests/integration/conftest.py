"""Fixtures of the integration suite: no network, a trained tokenizer, one training run per client.

Every client runs once per session (``client_run``) and each test checks one aspect of that
run against what the Trainer logged, so a failure names the aspect and the client.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _refuse_remote(connect: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family == getattr(socket, "AF_UNIX", None) or (isinstance(address, tuple) and address[0] in _LOOPBACK):
            return connect(self, address)
        raise OSError(f"the integration suite must not reach the network (connect to {address!r})")

    return guarded


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """While it lasts: the hub switched off (``HF_HUB_OFFLINE=1``, also in the hub's already imported
    constants) and any non-loopback connection refused, so nothing is downloaded and a client that
    tries fails loudly. One thread for torch (tiny ops: faster on 2 shared cores, as the root conftest
    does), no progress bars, and no ``gc.collect`` at every ``train()`` (accelerate's
    ``clear_device_cache``, which does nothing else on CPU). Everything is restored on exit."""
    import accelerate.utils.memory
    import datasets
    import huggingface_hub.constants
    import torch

    threads = torch.get_num_threads()
    bars = datasets.is_progress_bar_enabled()
    with pytest.MonkeyPatch.context() as mp:
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            mp.setenv(name, "1")
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setattr(socket.socket, "connect", _refuse_remote(socket.socket.connect))
        mp.setattr(socket.socket, "connect_ex", _refuse_remote(socket.socket.connect_ex))
        mp.setattr(accelerate.utils.memory, "clear_device_cache", lambda garbage_collection=False: None)
        torch.set_num_threads(1)
        datasets.disable_progress_bars()
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            if bars:
                datasets.enable_progress_bars()


@pytest.fixture(scope="session")
def network_guard() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The wrapper :func:`offline` puts around ``socket.connect`` (for testing it without any traffic)."""
    return _refuse_remote


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    from tinyparts import train_tokenizer

    with offline():
        return train_tokenizer()


@pytest.fixture(scope="session")
def client_run(tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Any]:
    """``client_run(name)``: that client's :class:`clients.Run`, trained on first use and shared by the tests."""
    from clients import run_client

    runs: dict[str, Any] = {}

    def get(client: str) -> Any:
        if client not in runs:
            try:
                with offline():
                    runs[client] = run_client(client, tokenizer, tmp_path_factory.mktemp(client) / "out")
            except Exception as exc:  # a failed run fails every test of that client, without training again
                runs[client] = exc
        if isinstance(runs[client], BaseException):
            raise runs[client]
        return runs[client]

    return get

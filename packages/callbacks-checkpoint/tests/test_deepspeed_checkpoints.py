"""A DeepSpeed checkpoint folder is one unit: complete only with its ``global_stepN`` folder AND ``latest``.

The Trainer's DeepSpeed resume (transformers 5.24 ``deepspeed_load_checkpoint``) globs
``global_step*`` in the folder and asks the engine to load the tag that ``latest`` names; the
engine writes ``latest`` after the ``global_stepN`` folder. Without either, resume fails, so the
pruner must not count such a folder as the newest resumable checkpoint (the policy always keeps
the newest complete one). The whole folder, ``global_stepN`` included, is kept or deleted together:
the pruner only ever renames/removes ``checkpoint-N`` folders.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer_callbacks.checkpoint.policy import CheckpointInfo, RetentionPolicy, decide
from trainer_callbacks.checkpoint.scan import full_scan, is_complete

DS = ["config.json", "model.safetensors", "trainer_state.json", "scheduler.pt", "zero_to_fp32.py"]


@pytest.mark.parametrize(
    ("extra", "complete"),
    [
        (["global_step8", "latest"], True),
        (["global_step8"], False),  # the engine was interrupted before it wrote its tag
        (["latest"], False),  # the tag names a folder that is not there
        ([], True),  # not a DeepSpeed checkpoint: the weights decide
    ],
)
def test_deepspeed_checkpoint_is_complete_only_with_its_engine_folder_and_tag(extra: list[str], complete: bool) -> None:
    assert is_complete([*DS, *extra]) is complete


def test_the_newest_resumable_deepspeed_checkpoint_is_kept(tmp_path: Path) -> None:
    for step, extra in ((4, ["global_step4", "latest"]), (8, ["global_step8"])):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in [*DS, *extra]:
            if name.startswith("global_step"):
                (folder / name).mkdir()
                (folder / name / "mp_rank_00_model_states.pt").write_bytes(b"x")
            else:
                (folder / name).write_text("{}" if name.endswith(".json") else "x")
        if "latest" in extra:
            (folder / "latest").write_text(f"global_step{step}")
    found = full_scan(tmp_path, 8).candidates
    assert [(c.step, c.complete) for c in found] == [(4, True), (8, False)]
    infos = [CheckpointInfo(path=f.path, step=f.step, complete=f.complete) for f in found]
    decision = decide(infos, RetentionPolicy(keep_last=1, keep_best=0))
    assert "newest_complete" in decision.kept[4]  # checkpoint-8 cannot be resumed: checkpoint-4 stays
    assert decision.deleted == ()

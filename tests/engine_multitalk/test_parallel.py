"""Sequence- and CFG-parallel MultiTalk on 2 and 4 CPU ranks (gloo) equals the single-rank output.

The single-rank output of the same code matches MeiGen's reference (test_sampling_parity,
test_transformer_parity), so the multi-rank output does too. fp32, held to the rounding bound
of each output (parity.py): splitting a sum over ranks reorders it, which is rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from multitalk.runner.engines.multitalk.parallel_plan import (
    ParallelPlan,
    plan_layout,
    sequence_parallel_bytes,
    split_offsets,
    split_sizes,
)

from . import parity, ranks, tiny


def assert_matches_single_rank(single: dict[str, Any], key: str, actual: torch.Tensor) -> None:
    """`actual` within the fp32 rounding bound of the single-rank output `key` (cases/NAME, forward/PERSONS)."""
    run = single["run"]
    result = parity.compare(key, actual, run.outputs[key], run.simulated[key], run.reductions)
    parity.record(result)
    assert result.margin <= 1.0, result.describe()


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    return ranks.single_rank_results()


@pytest.fixture(scope="module", params=[2, 4], ids=["2ranks", "4ranks"])
def multi(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    world: int = request.param
    return world, ranks.multi_rank_results(world, tmp_path_factory.mktemp(f"ranks{world}"))


EXPECTED_LAYOUTS = {
    # (world, case) -> plan: 3 evaluations per step split the sequence; 2 fill CFG groups first.
    (2, "clip_two_persons"): ParallelPlan(cfg=1, sp=2),
    (2, "streaming_two_persons"): ParallelPlan(cfg=1, sp=2),
    (2, "streaming_one_person"): ParallelPlan(cfg=2, sp=1),
    (2, "clip_one_person_text_off"): ParallelPlan(cfg=2, sp=1),
    (4, "clip_two_persons"): ParallelPlan(cfg=1, sp=4),
    (4, "streaming_two_persons"): ParallelPlan(cfg=1, sp=4),
    (4, "streaming_one_person"): ParallelPlan(cfg=2, sp=2),
    (4, "clip_one_person_text_off"): ParallelPlan(cfg=2, sp=2),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(ranks.CASES))
def test_pipeline_matches_single_rank(single: dict[str, Any], multi: tuple[int, dict[str, Any]], case: str) -> None:
    world, results = multi
    assert results["layouts"][case] == EXPECTED_LAYOUTS[(world, case)].describe()
    expected = single["cases"][case]
    assert results["cases"][case].shape == expected.shape
    assert_matches_single_rank(single, f"cases/{case}", results["cases"][case])


@pytest.mark.slow
def test_forward_with_uneven_splits_matches_single_rank(
    single: dict[str, Any], multi: tuple[int, dict[str, Any]]
) -> None:
    """Direct forwards on sub-groups: 3 ranks split 4 heads 2/1/1 and 48 tokens across frame edges."""
    world, results = multi
    groups = {len(r) for r in ranks.FORWARD_GROUPS[world]}
    for size in groups:
        for persons in (1, 2):
            assert_matches_single_rank(single, f"forward/{persons}", results["forward"][(size, persons)])


@pytest.mark.slow
def test_fsdp_sharded_blocks_match_single_rank(single: dict[str, Any], multi: tuple[int, dict[str, Any]]) -> None:
    """Every block FSDP-sharded over the world: each rank holds 1/world of it; forwards (with and without
    sequence parallelism) and a CFG-parallel render with TeaCache equal the single-rank output."""
    world, results = multi
    local, full = results["shard_rows"]
    assert local == full // world
    sharded = results["sharded"]
    for persons in (1, 2):
        assert_matches_single_rank(single, f"forward/{persons}", sharded[("forward", persons)])
    assert_matches_single_rank(single, "forward/2", sharded[("forward_sp", 2)])
    case = ranks.SHARDED_CASE
    assert_matches_single_rank(single, f"cases/{case}", sharded[("case", case)])


@pytest.mark.slow
def test_communication_volume_matches_the_model(multi: tuple[int, dict[str, Any]]) -> None:
    """Bytes rank 0 really sent per forward = sequence_parallel_bytes (the benchmark's projection uses it)."""
    world, results = multi
    tokens = tiny.LAT_T * (tiny.LAT_H // 2) * (tiny.LAT_W // 2)
    for size in {len(r) for r in ranks.FORWARD_GROUPS[world]}:
        for persons in (1, 2):
            expected = sequence_parallel_bytes(
                tokens, tiny.HEADS, tiny.DIM // tiny.HEADS, tiny.LAYERS, size, 0, 4, persons
            )
            assert results["sent"][(size, persons)] == expected > 0


def test_plan_layout() -> None:
    assert plan_layout(1, 3) == ParallelPlan(1, 1)
    assert plan_layout(3, 3) == ParallelPlan(3, 1)
    assert plan_layout(6, 3) == ParallelPlan(3, 2)
    assert plan_layout(8, 3) == ParallelPlan(1, 8)
    assert plan_layout(8, 2) == ParallelPlan(2, 4)
    assert plan_layout(5, 2) == ParallelPlan(1, 5)
    plan = ParallelPlan(2, 3)
    assert plan.group_ranks(1) == [3, 4, 5] and plan.group_of(4) == 1
    assert plan.branches_of(0, ("cond", "drop_audio")) == ("cond",)
    with pytest.raises(ValueError, match=r"1\.\.8"):
        plan_layout(9, 3)


def test_split_sizes() -> None:
    assert split_sizes(40, 3) == [14, 13, 13] and split_offsets(40, 3) == [0, 14, 27]
    assert split_sizes(32760, 8) == [4095] * 8
    assert sum(split_sizes(7, 4)) == 7


@pytest.mark.slow
def test_a_worker_that_fails_to_load_fails_the_render_quickly(tmp_path: Path) -> None:
    """A worker rank dies while loading (here: no model files): rank 0's next collective fails at once,
    and closing the pool reports the worker's error, instead of waiting for the process-group timeout."""
    import time

    from multitalk.runner.engines.multitalk import distributed
    from multitalk.runner.engines.multitalk.parallel_plan import Rendezvous
    from multitalk.runner.engines.multitalk.workers import LoadSpec, WorkerPool

    rendezvous = Rendezvous(2, port=ranks.free_port(), device_type="cpu")
    pool = WorkerPool(rendezvous, LoadSpec(model_dir=tmp_path / "absent", strict_geometry=False, precision="bf16"))
    started = time.monotonic()
    try:
        distributed.join(rendezvous, 0)
        with pytest.raises(RuntimeError):
            box: list[object] = [None]
            torch.distributed.broadcast_object_list(box, src=1)  # rank 1 never gets there
        with pytest.raises(RuntimeError, match="model files missing"):
            pool.close()
    finally:
        distributed.leave()
    assert time.monotonic() - started < 120

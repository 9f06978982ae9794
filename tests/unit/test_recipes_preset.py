"""sweep --preset recipes before anything runs: one row per recipe step, in order, each keeping the steps before it,
under fsdp_full_shard; a step naming no RunSpec field fails at import instead of dropping its row."""

from __future__ import annotations

import pytest

from harness.core.knobs import QUANT
from harness.core.spec import RunSpec
from harness.run.presets import PRESETS, plan
from harness.run.recipe_variants import RECIPE_STEPS, cumulative


def test_recipes_plans_one_row_per_step_each_keeping_the_steps_before() -> None:
    specs = plan("recipes", RunSpec(device="cpu"), exact=True)
    assert len(specs) == len(RECIPE_STEPS) and len(set(specs)) == len(specs)
    assert PRESETS["recipes"].table == "levers"
    held: dict[str, object] = {}
    for spec, (_, changes) in zip(specs, RECIPE_STEPS, strict=True):
        held.update(changes)
        assert all(getattr(spec, k) == v for k, v in held.items()), (spec, held)
        assert (spec.strategy, spec.nproc) == ("fsdp_full_shard", 2)
    assert [s.loss_type for s in specs] == ["full", "chunked", "chunked", "chunked", "chunked"]
    assert [s.compile for s in specs] == ["off", "off", "blocks", "blocks", "blocks"]
    assert [s.activation_checkpointing for s in specs][-2:] == ["op", "op"]
    assert specs[-1].lora_rank > 0 and specs[-1].quant in QUANT[1:]


def test_a_recipe_step_naming_no_spec_field_fails_at_import_not_silently() -> None:
    with pytest.raises(ValueError, match="recipes step 'new': RunSpec has no field lossy"):
        cumulative((("full", {}), ("new", {"lossy": 1})))


def test_the_dry_run_prints_every_step_planned_or_unsupported_with_the_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from harness.cli.main import main

    assert main(["sweep", "--preset", "recipes", "--device", "cpu", "--exact-preset", "--dry-run"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["spec"]["compile"] for line in lines] == ["off", "off", "blocks", "blocks", "blocks"]
    for line in lines:
        assert line["status"] == "planned" or line["reason"].startswith("fsdp_full_shard with --quant"), line

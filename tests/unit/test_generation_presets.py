"""The sweep side of the generate workload: the generate flags on `sweep`, the `kv-cache` and `offload` presets
(planned and validated, nothing launched), and the tables the generation presets print under their records."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rich.console import Console

from harness.core.record import Record
from harness.core.spec import RunSpec
from harness.core.units import MIB
from harness.estimate.generation import predict_generation
from harness.estimate.load_bytes import loaded_weights
from harness.models.zoo import ZOO
from harness.report.generation_tables import inference_table, kv_cache_table, offload_table, rule_bytes
from harness.run.generation_variants import KV_CACHE_BATCHES, KV_CACHE_CONTEXTS
from harness.run.presets import plan
from harness.run.validate import validate


def _dry_sweep(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    from harness.cli.main import main

    try:
        code = main(["sweep", "--dry-run", *args])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, [json.loads(line) for line in out.out.splitlines() if line.startswith("{")], out.err


def test_sweep_takes_the_generate_flags_over_the_presets(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = _dry_sweep(capsys, "--preset", "inference", "--models", "tiny", "--prompt-len", "8",
                                "--new-tokens", "2", "--num-beams", "2", "--kv-cache", "dynamic")
    assert code == 0 and len(lines) == len(plan("inference", RunSpec(device="cpu")))
    for line in lines:
        spec = line["spec"]
        assert (spec["workload"], spec["prompt_len"], spec["new_tokens"], spec["num_beams"], spec["kv_cache"]) == \
            ("generate", 8, 2, 2, "dynamic")


def test_sweep_with_workload_generate_turns_a_training_preset_into_generation(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = _dry_sweep(capsys, "--preset", "smoke", "--workload", "generate", "--offload", "disk")
    assert code == 0 and {line["spec"]["workload"] for line in lines} == {"generate"}
    planned = {line["spec"]["strategy"] for line in lines if line["status"] == "planned"}
    assert planned == {"single"}  # offload to disk runs under single only; the others say why
    assert all("--offload disk runs under single only" in line["reason"] or "generat" in line["reason"]
               for line in lines if line["status"] == "unsupported")


def test_a_generate_flag_on_a_training_sweep_is_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = _dry_sweep(capsys, "--preset", "smoke", "--prompt-len", "8")
    assert code == 2 and lines == [] and len(err.strip().splitlines()) == 1
    assert err.startswith("spacetime: error: --prompt-len: applies to --workload generate only")


def test_the_kv_cache_preset_is_batch_by_context_and_the_cache_crosses_the_weights_inside_it() -> None:
    specs = plan("kv-cache", RunSpec(device="cpu"))
    assert [(s.batch_size, s.prompt_len + s.new_tokens) for s in specs] == \
        [(b, c) for b in KV_CACHE_BATCHES for c in KV_CACHE_CONTEXTS]
    above = []
    for spec in specs:
        assert (spec.workload, spec.strategy, spec.model, spec.num_beams) == ("generate", "single", "tiny", 1)
        assert validate(spec) == spec
        predicted = predict_generation(spec, device="cpu")
        above.append(predicted.kv_cache_bytes > predicted.phase_peaks["load_bytes"])
    assert any(above) and not all(above)  # the crossover lies inside the grid


def test_the_offload_preset_keeps_cpu_as_an_unsupported_row_with_the_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = _dry_sweep(capsys, "--preset", "offload", "--device", "cpu")
    assert code == 0
    assert [(line["spec"]["offload"], line["status"]) for line in lines] == \
        [("none", "planned"), ("cpu", "unsupported"), ("disk", "planned")]
    assert "--offload cpu on a CPU-only run" in lines[1]["reason"]
    assert {line["spec"]["model"] for line in lines} == {"125m"}


def _text(table: Any) -> str:
    out = Console(width=300, record=True)
    out.print(table)
    return out.export_text()


def _gen(status: str = "ok", error: str | None = None, **fields: Any) -> dict[str, Any]:
    spec = RunSpec(workload="generate", **{k: v for k, v in fields.items() if k in RunSpec.__dataclass_fields__})
    figures = {k: v for k, v in fields.items() if k not in RunSpec.__dataclass_fields__}
    return Record(spec=spec, status=status, error=error, **figures).to_row()


def test_the_kv_cache_table_marks_cells_above_the_weights_and_the_crossover() -> None:
    weights, per_position = 40 * MIB, 16_384  # the cache equals the weights at 2,560 positions over the batch
    rows = [_gen(batch_size=b, prompt_len=c - 8, new_tokens=8, load_bytes=weights,
                 kv_cache_bytes=per_position * b * c) for b in (1, 4) for c in (512, 4096)]
    rows.append(_gen("oom", "out of memory", batch_size=8, prompt_len=4088, new_tokens=8))
    text = _text(kv_cache_table(rows))
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()[:1].isdigit()}
    for batch in (1, 4):
        below, above = (f"{per_position * batch * c / MIB:,.1f}" for c in (512, 4096))
        assert lines[str(batch)] == [below, above, "*", f"{weights / MIB:,.1f}",
                                     f"{weights / per_position / batch:,.0f}"]
    assert lines["8"] == ["oom", "-", "-"]


def test_the_offload_table_sets_each_mode_against_none_and_keeps_the_unsupported_row() -> None:
    base: dict[str, Any] = {"model": "125m", "load_bytes": 500 * MIB, "ttft_s": 1.0}
    rows = [_gen(offload="none", peak_bytes=500 * MIB, decode_s_per_token_p50=0.25, **base),
            _gen("unsupported", "--offload cpu on a CPU-only run: nothing to offload", offload="cpu",
                 model="125m"),
            _gen(offload="disk", peak_bytes=100 * MIB, decode_s_per_token_p50=1.0, **base)]
    text = _text(offload_table(rows))
    lines = {line.split()[0]: line for line in text.splitlines() if line.split()[:1] in (["none"], ["cpu"],
                                                                                         ["disk"])}
    assert "1.00x" in lines["none"] and "0.20x" in lines["disk"] and "4.00x" in lines["disk"]
    assert "unsupported" in lines["cpu"] and "--offload cpu on a CPU-only run" in lines["cpu"]


def test_the_inference_table_puts_the_rule_beside_the_measured_load() -> None:
    cfg = ZOO["tiny"]
    rows = []
    for dtype, quant in (("fp32", "none"), ("bf16", "none"), ("fp32", "int8"), ("fp32", "nf4")):
        spec = RunSpec(workload="generate", model="tiny", dtype=dtype, quant=quant)
        rows.append(_gen(model="tiny", dtype=dtype, quant=quant,
                         load_bytes=int(loaded_weights(cfg, spec).total * 1.01)))
    assert [rule_bytes(r) for r in rows] == [4.0, 2.0, 1.0, 0.5]
    text = _text(inference_table(rows, wide=True))
    for row in rows:
        assert f"{cfg.param_count() * rule_bytes(row) / MIB:,.1f}" in text
    assert text.count("+1.00%") == len(rows)


def test_the_report_of_generate_records_draws_memory_against_tokens_per_s(tmp_path: Any) -> None:
    from harness.report.generation_plot import generated, point_label
    from harness.report.html_report import write_report

    figures: dict[str, Any] = {"load_bytes": 20 * MIB, "ttft_s": 0.1, "decode_s_per_token_p50": 0.01}
    rows = [_gen(strategy="single", nproc=1, offload="none", peak_bytes=30 * MIB, tokens_per_s=400.0, **figures),
            _gen(strategy="single", nproc=1, offload="disk", peak_bytes=6 * MIB, tokens_per_s=90.0, **figures),
            _gen(strategy="ddp", nproc=2, peak_bytes=31 * MIB, tokens_per_s=700.0, **figures),
            _gen("unsupported", "why", strategy="single", nproc=1, offload="cpu")]
    train = Record(spec=RunSpec(), status="ok", global_batch=4, peak_bytes=5 * MIB, tokens_per_s=10.0).to_row()
    assert generated([*rows, train]) == rows[:3]  # one point per strategy or offload mode that ran
    assert [point_label(r) for r in rows[:3]] == ["single x1", "single x1, offload disk", "ddp x2"]
    paths = write_report([*rows, train], tmp_path)
    assert [p.name for p in paths] == ["tradeoff.png", "rank_memory.png", "generation.png", "index.html"]
    assert paths[2].read_bytes().startswith(b"\x89PNG") and paths[2].stat().st_size > 10_000
    assert "generation.png" in paths[3].read_text()
    assert "generation.png" not in [p.name for p in write_report([train], tmp_path / "train")]

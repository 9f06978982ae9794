"""The generation presets run for real, shortened to seconds on `tiny`: `offload` (none and disk measured, cpu an
`unsupported` row with its reason, each against none in the preset's table) and `kv-cache` at one short context
(the cache linear in the batch, the crossover context from the measured bytes per position)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.run import store
from tests.helpers import spacetime

SHORT = ("--models", "tiny", "--no-progress")


def _table_lines(stdout: str, title: str) -> list[list[str]]:
    """The rows of the preset's table (under `title`), split into words."""
    body = stdout[stdout.index(title):].split("\u2500\u2500\u2500", 1)[1].split("\n", 1)[1]
    return [line.split() for line in body.splitlines() if line.strip() and " ok -> " not in line
            and not line.startswith("(")]


def test_the_offload_preset_measures_none_and_disk_and_keeps_cpu_unsupported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = spacetime("sweep", "--preset", "offload", *SHORT, "--prompt-len", "16", "--new-tokens", "4", "--device",
                    "cpu", "--store", str(tmp_path))
    assert out.returncode == 0, out.stderr
    rows = {r["offload"]: r for r in store.rows(tmp_path)}
    assert {k: r["status"] for k, r in rows.items()} == {"none": "ok", "cpu": "unsupported", "disk": "ok"}
    assert rows["disk"]["peak_bytes"] < rows["none"]["peak_bytes"]  # the weights stay on disk between modules
    lines = {line[0]: line for line in _table_lines(out.stdout, "offload: peak memory")}
    none, disk = rows["none"], rows["disk"]
    assert f"{disk['peak_bytes'] / none['peak_bytes']:.2f}x" in lines["disk"]
    assert f"{disk['decode_s_per_token_p50'] / none['decode_s_per_token_p50']:.2f}x" in lines["disk"]
    assert lines["none"].count("1.00x") == 2
    assert lines["cpu"][1] == "unsupported" and "CPU-only" in " ".join(lines["cpu"])


def test_the_kv_cache_preset_grows_the_cache_with_the_batch_and_puts_the_crossover_beside_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = spacetime("sweep", "--preset", "kv-cache", *SHORT, "--prompt-len", "24", "--new-tokens", "8", "--store",
                    str(tmp_path))
    assert out.returncode == 0, out.stderr
    rows = sorted(store.rows(tmp_path), key=lambda r: r["batch_size"])
    assert [r["status"] for r in rows] == ["ok"] * 3 and len({r["batch_size"] for r in rows}) == 3
    per_position = {r["kv_cache_bytes"] / (r["batch_size"] * 32) for r in rows}
    assert len(per_position) == 1  # the static cache: the same bytes per position for every sequence
    lines = {line[0]: line for line in _table_lines(out.stdout, "KV cache MiB by batch")}
    for r in rows:  # batch, the cache at the one context (below the weights: no *), the weights, the crossover
        assert lines[str(r["batch_size"])] == [str(r["batch_size"]), f"{r['kv_cache_bytes'] / 2**20:,.1f}",
                                               f"{r['load_bytes'] / 2**20:,.1f}",
                                               f"{r['load_bytes'] / (r['kv_cache_bytes'] / 32):,.0f}"]

"""The tables of the generation presets, printed under the sweep's records:

- inference: each dtype / quantization's measured load beside the rule of thumb (4, 2, 1, 0.5 bytes per
  parameter) and beside the rule plus what the rule leaves out (the quantizer's scales, the embedding, norms and
  output head kept in the dtype: harness/estimate/load_bytes.py);
- kv-cache: the KV cache's bytes by batch (down) and context (across), `*` where it is above the weights, and the
  context at which it equals them, from the measured bytes per position;
- offload: each offload mode's peak and seconds per token, and their ratios to the same run without offload;
  a mode that did not run keeps its row, with its status and the reason.
"""

from __future__ import annotations

from typing import Any

from harness.core.spec import RunSpec
from harness.core.units import MIB
from harness.estimate.load_bytes import QUANT_RULE, RULE_BYTES, loaded_weights
from harness.models.zoo import config_for
from harness.report.columns import Column, Fitted, fields

Row = dict[str, Any]


def rule_bytes(row: Row) -> float:
    """The rule of thumb's bytes per parameter for a row: 4 (fp32), 2 (16-bit), 1 (int8), 0.5 (4-bit)."""
    name = QUANT_RULE.get(str(row.get("quant")), "fp32" if row.get("dtype") == "fp32" else "bf16")
    return RULE_BYTES[name]


def _spec(row: Row) -> RunSpec:
    return RunSpec(**{k: row[k] for k in RunSpec.__dataclass_fields__ if k in row})


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.1f}"


def _ratio(now: float | None, before: float | None) -> str:
    return "-" if now is None or not before else f"{now / before:.2f}x"


def _ok(row: Row, field: str) -> float | None:
    return row.get(field) if row.get("status") == "ok" else None


def _inference_row(row: Row) -> Row:
    spec = _spec(row)
    cfg = config_for(spec)
    params = cfg.param_count()
    rule = params * rule_bytes(row)
    expected = loaded_weights(cfg, spec).total  # the rule, plus the scales and the layers left in the dtype
    load = _ok(row, "load_bytes")
    return {**row, "params": params, "rule_bytes": rule, "kept_bytes": expected - rule, "expected_bytes": expected,
            "off_by": None if load is None else load / expected - 1, "per_param": None if load is None
            else load / params}


INFERENCE_COLUMNS = [
    Column("model", "model", lambda r: str(r["model"]), "left", fold=True),
    Column("dtype", "dtype", lambda r: str(r["dtype"]), "left"),
    Column("quant", "quant", lambda r: str(r["quant"]), "left"),
    Column("status", "status", lambda r: str(r["status"]), "left"),
    Column("rule", "rule\nB/param", lambda r: f"{rule_bytes(r):g}", values=lambda r: {"rule_b_per_param":
                                                                                          rule_bytes(r)}),
    Column("rule_mib", "rule\nMiB", lambda r: _mib(r["rule_bytes"]), values=fields("rule_bytes")),
    Column("kept_mib", "+ scales,\nunquantized\nMiB", lambda r: _mib(r["kept_bytes"]), values=fields("kept_bytes")),
    Column("load_mib", "measured\nload MiB", lambda r: _mib(_ok(r, "load_bytes")), values=fields("load_bytes")),
    Column("off_by", "measured vs\nrule + kept", lambda r: "-" if r["off_by"] is None else f"{r['off_by']:+.2%}",
           values=fields("off_by")),
    Column("per_param", "measured\nB/param", lambda r: "-" if r["per_param"] is None else f"{r['per_param']:.3f}",
           values=fields("per_param")),
]


def inference_table(rows: list[Row], title: str | None = None, wide: bool = False) -> Fitted:
    """Per dtype / quantization row: the rule's bytes, what it leaves out, and the measured load."""
    return Fitted(INFERENCE_COLUMNS, [_inference_row(r) for r in rows],
                  title or "loading for inference: measured beside the rule of thumb", wide)


def _context(row: Row) -> int:
    return int(row["prompt_len"]) + int(row["new_tokens"])


def _positions(row: Row) -> int:
    """Positions the cache holds at the end: the static cache all of them; the dynamic one all but the last
    token, which is never fed back."""
    return _context(row) - (row.get("kv_cache") == "dynamic")


def _kv_cell(row: Row | None) -> str:
    if row is None:
        return ""
    if row["status"] != "ok" or row.get("kv_cache_bytes") is None:
        return str(row["status"])
    above = row["kv_cache_bytes"] > row["load_bytes"]
    return f"{row['kv_cache_bytes'] / MIB:,.1f}{' *' if above else ''}"


def _crossover(group: list[Row]) -> str:
    """The context at which the cache equals the weights, at this batch: the weights over the measured bytes
    per position of every sequence (the mean over the group's ok rows)."""
    ok = [r for r in group if r["status"] == "ok" and r.get("kv_cache_bytes") and r.get("load_bytes")]
    if not ok:
        return "-"
    per_position = sum(r["kv_cache_bytes"] / _positions(r) for r in ok) / len(ok)
    weights = sum(r["load_bytes"] for r in ok) / len(ok)
    return f"{weights / per_position:,.0f}"


def _cell_column(key: str, header: str) -> Column:
    return Column(key, header, lambda r: str(r[key]))


def kv_cache_table(rows: list[Row], title: str | None = None, wide: bool = False) -> Fitted:
    """KV cache MiB by batch (down) and context (across); the weights and the crossover per batch."""
    contexts = sorted({_context(r) for r in rows})
    keys = list(dict.fromkeys((r["model"], r["dtype"], r["batch_size"], r["num_beams"]) for r in rows))
    grid = []
    for key in keys:
        group = [r for r in rows if (r["model"], r["dtype"], r["batch_size"], r["num_beams"]) == key]
        cells = {_context(r): r for r in group}
        weights = next((r["load_bytes"] for r in group if r["status"] == "ok" and r.get("load_bytes")), None)
        batch = str(key[2]) + (f" x {key[3]} beams" if key[3] > 1 else "")
        grid.append({"model": f"{key[0]} {key[1]}", "batch": batch, "weights": _mib(weights),
                     "crossover": _crossover(group), **{f"ctx={c}": _kv_cell(cells.get(c)) for c in contexts}})
    columns = [Column("model", "model", lambda r: r["model"], "left", fold=True),
               Column("batch", "batch \\\ncontext", lambda r: r["batch"], "left")]
    columns += [_cell_column(f"ctx={c}", str(c)) for c in contexts]
    columns += [Column("weights", "weights\nMiB", lambda r: r["weights"]),
                Column("crossover", "KV = weights\nat context", lambda r: r["crossover"])]
    return Fitted(columns, grid, title or "KV cache MiB by batch and context (prompt + new tokens); "
                  "* above the weights", wide)


def _offload_rows(rows: list[Row]) -> list[Row]:
    """Each row with the `none` row of the same spec but offload (if it ran) as its baseline."""
    def same(row: Row) -> tuple[Any, ...]:
        return tuple(v for k, v in sorted(_spec(row).__dict__.items()) if k != "offload")

    bases = {same(r): r for r in rows if r.get("offload") == "none" and r["status"] == "ok"}
    return [{**r, "base": bases.get(same(r), {})} for r in rows]


def _why(row: Row) -> str:
    """A run that did not happen, in short: its reason up to the first colon."""
    return "" if row["status"] == "ok" else str(row.get("error") or "").split(": ")[0]


def _per_token(row: Row) -> float | None:
    return _ok(row, "decode_s_per_token_p50")


OFFLOAD_COLUMNS = [
    Column("model", "model", lambda r: str(r["model"]), "left", fold=True),
    Column("offload", "offload", lambda r: str(r["offload"]), "left"),
    Column("status", "status", lambda r: str(r["status"]), "left"),
    Column("load_mib", "load\nMiB", lambda r: _mib(_ok(r, "load_bytes")), values=fields("load_bytes")),
    Column("peak_mib", "peak\nMiB", lambda r: _mib(_ok(r, "peak_bytes")), values=fields("peak_bytes")),
    Column("peak_ratio", "peak\nvs none", lambda r: _ratio(_ok(r, "peak_bytes"), r["base"].get("peak_bytes"))),
    Column("s_per_token", "s/token\np50", lambda r: "-" if _per_token(r) is None else f"{_per_token(r):.4f}",
           values=fields("decode_s_per_token_p50")),
    Column("s_per_token_ratio", "s/token\nvs none",
           lambda r: _ratio(_per_token(r), r["base"].get("decode_s_per_token_p50"))),
    Column("ttft_s", "TTFT\ns", lambda r: "-" if _ok(r, "ttft_s") is None else f"{r['ttft_s']:.3f}",
           values=fields("ttft_s")),
    Column("reason", "why not (in full under the records)", lambda r: _why(r), "left", wrap=True,
           values=lambda r: {"error": r.get("error")}),
]


def offload_table(rows: list[Row], title: str | None = None, wide: bool = False) -> Fitted:
    """Per offload mode: peak and seconds per token, each against the same run without offload."""
    return Fitted(OFFLOAD_COLUMNS, _offload_rows(rows), title or "offload: peak memory and seconds per token "
                  "against none", wide)


GENERATION_TABLES = {"inference": inference_table, "kv-cache": kv_cache_table, "offload": offload_table}

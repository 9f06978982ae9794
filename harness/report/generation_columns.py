"""The records table's columns for generate runs: memory after loading, the prefill's and the decode's peaks,
the KV cache, time to first token and seconds per decoded token.  They appear only where a row is a generate
record, so training tables keep their width."""

from __future__ import annotations

from typing import Any

from harness.core.units import MIB
from harness.report.columns import MACHINE, Column, fields

_TOKEN_FIELDS = fields("decode_s_per_token_p50", "decode_s_per_token_p10", "decode_s_per_token_p90")


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:,.1f}"


def _per_token(row: dict[str, Any]) -> str:
    if row.get("decode_s_per_token_p50") is None:
        return "-"
    return (f"{row['decode_s_per_token_p50']:.4f} [{row['decode_s_per_token_p10']:.4f}-"
            f"{row['decode_s_per_token_p90']:.4f}]")


def _mib_column(key: str, header: str, field: str, drop: int) -> Column:
    return Column(key, header, lambda r: _mib(r.get(field)), drop=drop, values=fields(field))


def generation_columns(rows: list[dict[str, Any]]) -> list[Column]:
    """The generation figures, where any row has them; else none."""
    if not any(r.get("workload") == "generate" for r in rows):
        return []
    seconds = fields("ttft_s")
    return [
        _mib_column("load_mib", "load\nMiB", "load_bytes", 0),
        _mib_column("prefill_mib", "prefill\npeak MiB", "prefill_peak_bytes", 0),
        _mib_column("decode_mib", "decode\npeak MiB", "decode_peak_bytes", 0),
        _mib_column("kv_cache_mib", "KV cache\nMiB", "kv_cache_bytes", 5),
        Column("ttft_s", "TTFT\ns", lambda r: "-" if r.get("ttft_s") is None else f"{r['ttft_s']:.3f}",
               drop=4, values=seconds),
        Column("decode_s_per_token", "s/token\np50 [p10-p90]", _per_token, drop=6, values=_TOKEN_FIELDS,
               narrow=Column("decode_s_per_token_p50", "s/token\np50",
                             lambda r: "-" if r.get("decode_s_per_token_p50") is None
                             else f"{r['decode_s_per_token_p50']:.4f}", drop=3, values=_TOKEN_FIELDS)),
        Column("tokens_per_s_per_seq", "tokens/s\nper seq",
               lambda r: "-" if r.get("tokens_per_s_per_seq") is None else f"{r['tokens_per_s_per_seq']:,.1f}",
               drop=4, values=fields("tokens_per_s_per_seq")),
        Column("generation", "generation", lambda r: "", view=MACHINE,
               values=fields("workload", "prompt_len", "new_tokens", "num_beams", "kv_cache", "offload")),
    ]

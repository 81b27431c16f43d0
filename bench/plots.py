"""One PNG per benchmark (matplotlib, no display needed)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import BenchResult


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else 0.0


def buildloop(result: BenchResult, png: Path) -> bool:
    plt = _plt()
    profiles = list(dict.fromkeys(r["profile"] for r in result.rows))
    variants = sorted(dict.fromkeys(r["variant"] for r in result.rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(len(variants), 1)
    for i, variant in enumerate(variants):
        rows = {r["profile"]: r for r in result.rows if r["variant"] == variant}
        xs = [p + (i - (len(variants) - 1) / 2) * width for p in range(len(profiles))]
        label = next(r["label"] for r in result.rows if r["variant"] == variant)
        ax1.bar(xs, [_num(rows.get(p, {}).get("wall_mean_ms")) for p in profiles], width,
                label=label)
        ax2.bar(xs, [_num(rows.get(p, {}).get("hook_p99_ms")) for p in profiles], width,
                label=label)
    for ax, title in ((ax1, "wall time per build, mean (ms)"), (ax2, "hook time p99 (ms)")):
        ax.set_xticks(range(len(profiles)), profiles)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.legend(*ax1.get_legend_handles_labels(), loc="lower center", ncol=len(variants),
               fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return True


def bars(result: BenchResult, png: Path, label_key: str, value_key: str, title: str,
         group_key: str | None = None) -> bool:
    plt = _plt()
    rows = [r for r in result.rows if _num(r.get(value_key)) > 0]
    if not rows:
        return False
    labels = [f"{r[group_key]}: {r[label_key]}" if group_key else str(r[label_key])
              for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    ax.barh(range(len(rows)), [_num(r[value_key]) for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return True


def panels(result: BenchResult, png: Path, group_key: str, label_key: str, value_key: str,
           title: Callable[[str], str], log_for: Callable[[str], bool] = lambda _: False) -> bool:
    """One horizontal bar panel per group (a cache, a unit), so scales never mix."""
    plt = _plt()
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in result.rows:
        if _num(row.get(value_key)) > 0:
            groups.setdefault(str(row[group_key]), []).append(row)
    if not groups:
        return False
    heights = [0.5 * len(rows) + 0.9 for rows in groups.values()]
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (group, rows) in zip(axes[:, 0], groups.items(), strict=True):
        values = [_num(r[value_key]) for r in rows]
        ax.barh(range(len(rows)), values)
        ax.set_yticks(range(len(rows)), [str(r[label_key]) for r in rows], fontsize=8)
        ax.invert_yaxis()
        for i, v in enumerate(values):
            ax.annotate(f" {v:,.3g}", (v, i), va="center", fontsize=8)
        if log_for(group):
            ax.set_xscale("log")
        ax.set_title(title(group), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return True


def drain(result: BenchResult, png: Path) -> bool:
    return panels(result, png, "cache", "method", "seconds",
                  lambda cache: f"{cache}: seconds to push every path (lower is better)")


def scale(result: BenchResult, png: Path) -> bool:
    return panels(result, png, "unit", "measure", "value", lambda unit: unit,
                  log_for=lambda unit: unit == "paths/s")


def profile(result: BenchResult, png: Path) -> bool:
    return bars(result, png, "what", "ms", "start-up / overhead (ms)")


PLOTTERS: dict[str, Callable[[BenchResult, Path], bool]] = {
    "buildloop": buildloop, "drain": drain, "scale": scale, "profile": profile,
}

"""Reports: one JSON file with everything, a Markdown page of tables, one PNG per benchmark."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .common import BenchResult, fmt

Plotter = Callable[[BenchResult, Path], bool]


def markdown_table(result: BenchResult) -> str:
    heads = [head for _, head in result.columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in result.rows:
        lines.append("| " + " | ".join(fmt(row.get(key)) for key, _ in result.columns) + " |")
    return "\n".join(lines)


def markdown(results: Sequence[BenchResult], meta: dict[str, Any],
             plots: dict[str, str]) -> str:
    out = ["# nix-push-queue benchmarks", ""]
    machine = meta.get("machine", {})
    out.append(
        f"Run {machine.get('date', '?')} on {machine.get('cpus', '?')} CPUs, "
        f"{machine.get('mem_gib', '?')} GiB, kernel {machine.get('kernel', '?')}, "
        f"{machine.get('nix', '?')}; mode `{meta.get('mode', '?')}`, "
        f"{meta.get('seconds', 0):.0f} s in all. Regenerate with `bench/run`."
    )
    for result in results:
        out += ["", f"## {result.title}", ""]
        if result.skipped:
            out += [f"Skipped: {result.skipped}"]
            continue
        params = ", ".join(f"{k}={v}" for k, v in result.params.items())
        out += [f"Parameters: {params}. Took {result.seconds:.0f} s.", ""]
        if result.headline:
            out += ["**Headline:** " + "; ".join(
                f"{k.replace('_', ' ')} {fmt(v)}" for k, v in result.headline.items()), ""]
        out += [markdown_table(result)]
        if result.name in plots:
            out += ["", f"![{result.title}]({plots[result.name]})"]
        if result.notes:
            out += [""] + [f"- {note}" for note in result.notes]
    return "\n".join(out) + "\n"


def write(out_dir: Path, results: Sequence[BenchResult], meta: dict[str, Any],
          plotters: dict[str, Plotter]) -> dict[str, Path]:
    """Write results.json, results.md and <bench>.png into `out_dir`; return the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    plots: dict[str, str] = {}
    for result in results:
        plotter = plotters.get(result.name)
        png = out_dir / f"{result.name}.png"
        if plotter is not None and not result.skipped and result.rows and plotter(result, png):
            plots[result.name] = png.name
            files[result.name] = png
    doc = {"meta": meta, "results": [r.to_json() for r in results], "plots": plots}
    files["json"] = out_dir / "results.json"
    files["json"].write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    files["md"] = out_dir / "results.md"
    files["md"].write_text(markdown(results, meta, plots), encoding="utf-8")
    return files

"""A change against its base, on one machine, back to back: the guard against features that
each cost a little and together make the platform twice as slow.

Runs the quick platform and slow-model benchmarks for ``BASE`` (a git worktree of it, with
this venv, driven by the work tree's ``benchmarks/`` and ``tests/``: one harness measures
both) and then for the work tree, and prints each table's rows side by side with the
ratio work / base of every figure (above 1: the work tree's figure is larger; for times,
slower). Neither run rewrites the README of record (``BENCH_README`` points elsewhere).

    make bench-compare BASE=main~3
    .venv/bin/python -m benchmarks.compare --base main~3 --bench slow_model
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ("platform", "slow_model")
NUMBER = re.compile(r"^[^\d-]*(-?[\d,]*\.?\d+)")


def run(tree: Path, bench: str, readme: Path) -> str:
    """The benchmark's output, shown as it runs (a quick run takes minutes)."""
    print(f"== benchmarks.{bench} --quick at {tree.name}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "BENCH_README": str(readme)}
    proc = subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{bench}", "--quick"],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output = []
    for line in proc.stdout:
        output.append(line)
        print(f"   {line}", end="", flush=True)
    if proc.wait() != 0:
        sys.exit(f"benchmarks.{bench} failed at {tree} (exit {proc.returncode})")
    return "".join(output)


def rows(output: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header and the rows (keyed by their first two cells) of the table printed last."""
    header: list[str] = []
    found: dict[str, list[str]] = {}
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith("|")]
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set(following.replace("|", "").strip()) <= {"-", " "} and following:
            header, found = cells, {}
        elif not set(line.replace("|", "").strip()) <= {"-", " "}:
            found[" / ".join(cells[:2])] = cells
    return header, found


def number(cell: str) -> float | None:
    match = NUMBER.match(cell.replace("**", ""))
    return float(match.group(1).replace(",", "")) if match else None


def ratio(base: str, work: str) -> str:
    b, w = number(base), number(work)
    if b is None or w is None or b == 0 or base == work:
        return "" if base != work else "="
    return f"{w / b:.2f}x"


def compare(bench: str, base_out: str, work_out: str) -> str:
    header, base = rows(base_out)
    _, work = rows(work_out)
    lines = [f"### {bench}", "", "| | " + " | ".join(header) + " |"]
    lines.append("|---" * (len(header) + 1) + "|")
    for key, cells in work.items():
        before = base.get(key)
        if before is None:
            continue
        lines.append("| base | " + " | ".join(before) + " |")
        lines.append("| work | " + " | ".join(cells) + " |")
        ratios = [ratio(b, w) for b, w in zip(before, cells, strict=False)]
        lines.append("| work / base | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--bench", action="append", choices=BENCHES, help="default: both")
    args = parser.parse_args()
    benches = args.bench or list(BENCHES)
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(base_tree), args.base],
            cwd=ROOT,
            check=True,
        )
        try:
            for harness in ("benchmarks", "tests"):
                shutil.rmtree(base_tree / harness)
                shutil.copytree(ROOT / harness, base_tree / harness)
            readme = Path(tmp) / "README.md"
            reports = []
            for bench in benches:
                before = run(base_tree, bench, readme)
                after = run(ROOT, bench, readme)
                reports.append(compare(bench, before, after))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT)
    print(f"\nbase {args.base} against the work tree, one machine, back to back:\n")
    print("\n\n".join(reports))


if __name__ == "__main__":
    main()

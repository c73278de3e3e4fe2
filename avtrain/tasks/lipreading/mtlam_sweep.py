"""Table 1 of the MTLAM paper on any MTLAM recipe: one training per set of memory levels, each evaluated on the test
split, gathered into one table (``avtrain sweep-levels``).

Every level set trains into ``<output_dir>-L<levels>`` (``-Lnone`` for the baseline). A finished level set (its
``sweep.json`` exists and names the same resolved recipe) is skipped; an interrupted one resumes from its
``last.pt``, so the whole sweep can be re-run after any interruption. A run folder whose checkpoint was trained
with a different recipe is refused rather than resumed (the trainer's rule: only the budget, how the work is
executed and where the shards live may change, ``avtrain.engine.checkpoint.RESUMABLE_CHANGES``); a finished level
set re-run with such a change (e.g. another ``trainer.threads``) is re-evaluated, not retrained.

Rows trained by separate calls (side by side, in different sittings, at different budgets) are put into one table
by ``gather_levels`` (``--gather``), which reads their ``sweep.json`` and trains nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from avtrain.config import MTLAMRecipe, Recipe, RecipeError, load_recipe

# LRW top-1 (%) of the paper's Table 1, shown beside our numbers for orientation (a different corpus and budget)
PAPER_LRW_TOP1: dict[tuple[int, ...], float] = {(): 89.6, (1,): 90.9, (2,): 91.1, (3,): 90.8, (1, 2): 91.3,
                                                (2, 3): 91.4, (1, 2, 3): 91.7}


@dataclass
class SweepRow:
    levels: list[int]
    name: str  # the paper's row name: baseline, #1, #1#2, ...
    run_dir: str
    top1: float
    top1_flip_tta: float | None
    samples: int
    seed: int
    recipe_sha256: str
    paper_lrw_top1: float | None


def parse_levels(text: str) -> tuple[int, ...]:
    """``""``, ``"-"`` or ``"none"`` -> ``()`` (the baseline), ``"2"`` -> ``(2,)``, ``"1,2"`` -> ``(1, 2)``."""
    if text.strip().lower() in ("", "-", "none"):
        return ()
    parts = [p.strip() for p in text.replace(" ", "").split(",") if p.strip()]
    try:
        levels = tuple(sorted(int(p) for p in parts))
    except ValueError:
        raise RecipeError(f"level set {text!r}: expected comma-separated level numbers, e.g. 1,2 (\"\" = baseline)") \
            from None
    if len(set(levels)) != len(levels):
        raise RecipeError(f"level set {text!r}: a level appears twice")
    return levels


def row_name(levels: tuple[int, ...]) -> str:
    return "baseline" if not levels else "".join(f"#{i}" for i in levels)


def run_dir_for(base_output_dir: str, levels: tuple[int, ...]) -> str:
    return f"{base_output_dir}-L{'_'.join(map(str, levels)) or 'none'}"


def recipe_hash(recipe: Recipe) -> str:
    """Of the fully resolved recipe (defaults filled in), so a changed recipe or --set is not mistaken for done."""
    return hashlib.sha256(recipe.to_yaml().encode()).hexdigest()


def level_recipe(path: Path, overrides: list[str], levels: tuple[int, ...], base_output_dir: str) -> Recipe:
    return load_recipe(path, [*overrides, f"memory_conf.levels=[{', '.join(map(str, levels))}]",
                              f"output_dir={run_dir_for(base_output_dir, levels)}"])


def check_sweep(path: Path, overrides: list[str], level_sets: list[tuple[int, ...]]) -> Recipe:
    """Everything that can be wrong is reported before the first training starts, not hours into the sweep."""
    base = load_recipe(path, overrides)
    if not isinstance(base, MTLAMRecipe):
        raise RecipeError(f"{path}: sweep-levels needs an MTLAM recipe (model: mtlam), got model {base.model!r}")
    n = base.conf("temporal").num_levels
    for levels in level_sets:
        if any(not 0 <= i <= n for i in levels):
            raise RecipeError(f"level set {','.join(map(str, levels))}: levels must be in 0..{n} "
                              f"(0 = after the front-ends, i = after temporal level i)")
    if len(set(level_sets)) != len(level_sets):
        raise RecipeError("a level set appears twice")
    return base


def sweep_levels(path: Path, level_sets: list[tuple[int, ...]], overrides: list[str] | None = None,
                 *, table_path: str | Path | None = None, console: Console | None = None) -> list[SweepRow]:
    from avtrain.api import train
    from avtrain.tasks.lipreading.evaluate import evaluate

    console = console or Console()
    overrides = overrides or []
    base = check_sweep(path, overrides, level_sets)
    rows: list[SweepRow] = []
    for levels in level_sets:
        r = level_recipe(path, overrides, levels, base.output_dir)
        digest = recipe_hash(r)
        done = Path(r.output_dir) / "sweep.json"
        if done.exists() and json.loads(done.read_text()).get("recipe_sha256") == digest:
            console.print(f"{row_name(levels)}: finished earlier, skipped ({done})")
            rows.append(SweepRow(**json.loads(done.read_text())))
            continue
        console.print(f"[bold]{row_name(levels)}[/bold]: training {r.output_dir}")
        train(r, resume=True, console=console)
        metrics = evaluate(r, console=console)
        row = SweepRow(list(levels), row_name(levels), r.output_dir, metrics["top1"], metrics.get("top1_flip_tta"),
                       metrics["samples"], r.seed, digest, PAPER_LRW_TOP1.get(levels))
        done.write_text(json.dumps(asdict(row), indent=1))
        rows.append(row)
    _publish(rows, str(table_path or f"{base.output_dir}-levels"), f"Table 1 on {path} (memory levels, test top-1)",
             console)
    return rows


def gather_levels(path: Path, level_sets: list[tuple[int, ...]], overrides: list[str] | None = None,
                  *, table_path: str | Path | None = None, console: Console | None = None) -> list[SweepRow]:
    """The table of rows finished by earlier ``sweep_levels`` calls, read from their ``sweep.json``; trains and
    evaluates nothing. The recipe's hash is not compared: gathering rows that were run with their own budgets or
    thread counts is the point. Every row must be finished, or nothing is written."""
    console = console or Console()
    base = check_sweep(path, overrides or [], level_sets)
    rows: list[SweepRow] = []
    missing: list[str] = []
    for levels in level_sets:
        done = Path(run_dir_for(base.output_dir, levels)) / "sweep.json"
        if not done.exists():
            missing.append(str(done.parent))
            continue
        try:
            rows.append(SweepRow(**json.loads(done.read_text())))
        except (json.JSONDecodeError, TypeError) as e:
            raise RecipeError(f"{done}: not a sweep-levels row ({e})") from None
    if missing:
        raise RecipeError(f"--gather: {len(missing)} of {len(level_sets)} level sets not finished (no sweep.json): "
                          f"{', '.join(missing)}; train them with the same command without --gather")
    _publish(rows, str(table_path or f"{base.output_dir}-levels"),
             f"Table 1 on {path} (memory levels, test top-1; rows gathered)", console)
    return rows


def _publish(rows: list[SweepRow], stem: str, title: str, console: Console) -> None:
    write_table(rows, stem, title=title)
    console.print(rich_table(rows, title), crop=False)
    console.print(f"written to {stem}.json and {stem}.md")


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def rich_table(rows: list[SweepRow], title: str) -> Table:
    cells = [[r.name, _pct(r.top1), _pct(r.top1_flip_tta), str(r.samples),
              "" if r.paper_lrw_top1 is None else f"{r.paper_lrw_top1:.1f}", r.run_dir] for r in rows]
    table = Table(title=title)
    # rich may wrap a header on a narrow terminal, never cut a value: the row names, numbers and run folders are
    # what a user reads and types next (printed with crop=False, a line too long for the terminal wraps, whole)
    for i, col in enumerate(("levels", "top-1 %", "flip TTA %", "clips", "paper, LRW %", "run")):
        table.add_column(col, justify="left" if col in ("levels", "run") else "right",
                         min_width=max((len(c[i]) for c in cells), default=1))
    for c in cells:
        table.add_row(*c)
    return table


def write_table(rows: list[SweepRow], stem: str, title: str) -> None:
    """``<stem>.json`` (the rows) and ``<stem>.md`` (a table for docs/results.md)."""
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    lines = [f"## {title}", "", "| levels | test top-1 | flip TTA | clips | seed | paper (LRW) | run |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        flip = "" if r.top1_flip_tta is None else f"{_pct(r.top1_flip_tta)} %"
        paper = "" if r.paper_lrw_top1 is None else f"{r.paper_lrw_top1:.1f} %"
        lines.append(f"| {r.name} | {_pct(r.top1)} % | {flip} | {r.samples} | {r.seed} | {paper} | `{r.run_dir}` |")
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")

"""The Markdown tables of the defects cells (AI-Lancet's general-defect experiment, mendnet.bench.defects),
in the layout of the former scripts' sections: the three repairs against the
original on test half 2, the dose (AI-Lancet's vote order against random weights at each share of the
chosen layer), and per seed what was located. Mean ± std over seeds, in percent; STALE marks a table cell
that includes a stale record."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from mendnet.bench.defects import dose_key
from mendnet.bench.grid import DEFECTS
from mendnet.bench.markdown import Row, head, lead, mark, rows_of, seed_table, summarise, table
from mendnet.bench.recipe import Recipe

NAMES = {
    "original": "original",
    "lancet": "AI-Lancet neuron fine-tuning",
    "random": "random weights",
    "plain": "plain fine-tuning",
}
"""A defects record's models (metric prefixes) → their rows' names."""


def finished(records: Sequence[dict]) -> list[dict]:
    """The defects records with figures (a refused experiment has none)."""
    return [r for r in records if r["kind"] == DEFECTS and "lancet.acc" in r["metrics"]]


def _group_heads(recipe: Recipe, row: Row) -> list[str]:
    """A row's data and model headings where the grid varies them (the attack is always the clean row)."""
    return [text for text, name in zip(head(recipe, row), lead(recipe), strict=True) if name != "attack"]


def _group_lead(recipe: Recipe) -> list[str]:
    return [name for name in lead(recipe) if name != "attack"]


def _of(records: Sequence[dict], row: Row) -> list[dict]:
    return [r for r in records if (r["data"], r["model"], r["attack"]) == row]


def _values(records: Sequence[dict], metric: str) -> list[float]:
    return [r["metrics"][metric] for r in records]


def _trained(recipe: Recipe, model: str, records: Sequence[dict]) -> str:
    """The "weights trained" cell of a model's row: the mean count over seeds for AI-Lancet and random."""
    seeds = len(recipe.grid.seeds)
    count = summarise(_values(records, "trained_weights"), False, seeds, digits=0)
    return {
        "original": "–",
        "lancet": f"{count} EI neurons (votes ≥ {100 * recipe.defects.vote_share:g}% of corrected pairs)",
        "random": f"{count}, random, same layer",
        "plain": "all",
    }[model]


def repair_table(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str | None:
    """The original and the three repairs on half 2 (the general-defect
    table): accuracy, accuracy on half 2's originally misclassified images, the weights trained and
    seconds (AI-Lancet's include locating); None without finished defects records."""
    done = finished(records)
    if not done:
        return None
    seeds = len(recipe.grid.seeds)
    lines = []
    for row in rows_of(done):
        chosen = _of(done, row)
        for model, name in NAMES.items():
            seconds = (
                "–" if model == "original" else summarise(_values(chosen, f"{model}.seconds"), False, seeds)
            )
            lines.append(
                [
                    *_group_heads(recipe, row),
                    name,
                    summarise(_values(chosen, f"{model}.acc"), True, seeds),
                    summarise(_values(chosen, f"{model}.fixed"), True, seeds),
                    _trained(recipe, model, chosen),
                    seconds + mark(chosen, stale),
                ]
            )
    title = (
        "**General defects** (AI-Lancet; the test set in seeded halves; erroneous samples: half 1's "
        "misclassified images; N_o: the defender split; the same data, loss and settings for the three "
        f'repairs; mean ± std over seeds {", ".join(map(str, recipe.grid.seeds))}). "half 2 misclassified": '
        "accuracy on the images of half 2 the original model gets wrong (0 for the original by definition)."
    )
    heads = ["model", "half 2 ACC %", "half 2 misclassified %", "weights trained", "seconds"]
    return table(title, [*_group_lead(recipe), *heads], lines)


def _pair(records: Sequence[dict], prefix: str, seeds: int) -> str:
    """ "ACC / fixed" of `prefix` (e.g. "dose_0.05.lancet"), each mean ± std in percent."""
    acc = summarise(_values(records, f"{prefix}.acc"), True, seeds)
    return f"{acc} / {summarise(_values(records, f'{prefix}.fixed'), True, seeds)}"


def dose_table(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str | None:
    """At each dose share, k weights of the chosen layer trained: AI-Lancet's first k by votes against k
    random ones, their half-2 ACC and fixed share, and AI-Lancet's fixed minus random's in points
    (the dose table); None without shares or finished defects records."""
    shares = recipe.defects.shares
    done = finished(records)
    if not shares or not done:
        return None
    seeds = len(recipe.grid.seeds)
    lines = []
    for row in rows_of(done):
        chosen = _of(done, row)
        original = f"{summarise(_values(chosen, 'original.acc'), True, seeds)} / 0.00"
        lines.append([*_group_heads(recipe, row), "original", "–", original, "–", "–"])
        for share in shares:
            key = dose_key(share)
            gains = [
                r["metrics"][f"{key}.lancet.fixed"] - r["metrics"][f"{key}.random.fixed"] for r in chosen
            ]
            lines.append(
                [
                    *_group_heads(recipe, row),
                    f"{100 * share:g}%",
                    summarise(_values(chosen, f"{key}.k"), False, seeds, digits=0),
                    _pair(chosen, f"{key}.lancet", seeds),
                    _pair(chosen, f"{key}.random", seeds),
                    summarise(gains, True, seeds) + mark(chosen, stale),
                ]
            )
    title = (
        "**General defects at several sizes of the trained set** (k weights of the chosen layer train: the "
        "first k of AI-Lancet's vote order, or k random ones; everything else as above; mean ± std over "
        f"seeds {', '.join(map(str, recipe.grid.seeds))})"
    )
    heads = [
        "share of the layer",
        "weights k",
        "AI-Lancet: half 2 ACC / misclassified fixed %",
        "random: half 2 ACC / misclassified fixed %",
        "AI-Lancet − random, points",
    ]
    return table(title, [*_group_lead(recipe), *heads], lines)


def _located_note(record: dict) -> str:
    m = record["metrics"]
    quartiles = " / ".join(f"{100 * m[k]:.2g}%" for k in ("ratio_q1", "ratio_median", "ratio_q3"))
    layer = int(m["layer_weights"])
    return (
        f"`{record['info']['layer']}`, {int(m['trained_weights'])} of {layer} weights trained; "
        f"{int(m['wrong_half1'])} erroneous in half 1, {int(m['wrong_half2'])} in half 2; "
        f"{int(m['corrected'])} of {int(m['pairs'])} pairs corrected, minimal ratio quartiles {quartiles}; "
        f"the EI sets' union {int(m['voted'])} weights ({100 * m['voted'] / layer:.0f}%)"
    )


def located_table(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str | None:
    """Per seed: the chosen layer, the EI neurons trained of its weights, the erroneous images of each half,
    the pairs corrected by ablation, the quartiles of their minimal ablation ratios and the EI sets' union
    ("Chosen layers" and "Located")."""
    return seed_table(recipe, finished(records), "**Located** (general defects)", _located_note, stale)


def defect_tables(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> list[str]:
    """The defects cells' tables (repairs, dose, located), those that have rows."""
    made = (f(recipe, records, stale) for f in (repair_table, dose_table, located_table))
    return [t for t in made if t]

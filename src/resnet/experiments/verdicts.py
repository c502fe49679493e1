"""The degradation study's numbers and the paper's findings tested on them: mean ± std per net over seeds, whether
training error orders by depth as in Figure 6 (plain: rising, residual: falling) with a margin beyond the seeds'
spread, and whether layer responses are as small as in Figure 7. Plain functions of plain data, so every verdict
is tested on known numbers."""

from __future__ import annotations

import statistics
from itertools import pairwise

YES, NO, NOT_SHOWN, NOT_MEASURED = "yes", "no", "not shown", "n/a"
KINDS = {"plain": "plain", "resnet": "residual"}
PAPER_ITERATIONS = 64_000  # the paper's CIFAR schedule (Sec. 4.2), behind Fig. 6's ordering of the residual nets


def _beyond(gap: float, margin: float) -> bool | None:
    """A difference against its margin: True beyond it, False beyond it the other way, None inside it."""
    return True if gap > margin else False if gap < -margin else None


def _answer(outcomes: list[bool | None]) -> str:
    """Yes when every check holds; no when one fails beyond its margin; else (one inside it) not shown."""
    return NO if False in outcomes else YES if outcomes and all(outcomes) else NOT_SHOWN


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def net_table(cells: list) -> list[dict]:
    """One row per net: mean ± std of the training and test error of its cells (:class:`.analysis.CellResult`,
    one per seed); plain nets first, by depth."""
    nets: dict[str, dict] = {}
    for c in cells:
        net = nets.setdefault(c.net, {"net": c.net, "kind": c.kind, "depth": c.depth, "runs": []})
        net["runs"].append(c)
    for net in nets.values():
        for key in ("train_error", "test_error"):
            net[key], net[f"{key}_std"] = mean_std([getattr(r, key) for r in net["runs"]])
        net["seeds"] = len(net["runs"])
        del net["runs"]
    return sorted(nets.values(), key=lambda n: (n["kind"] != "plain", n["depth"]))


def _rows(table: list[dict], kind: str) -> list[dict]:
    rows = sorted((n for n in table if n["kind"] == kind), key=lambda n: n["depth"])
    if len(rows) < 2:
        raise ValueError(f"a verdict needs two depths of {kind} nets, got {len(rows)}")
    return rows


def _chain(names: list[str], values: list[float], digits: int) -> str:
    """``a 1.00 < b 2.00 > c 1.50``: each pair joined by the relation that really holds between them."""
    out = f"{names[0]} {values[0]:.{digits}f}"
    for name, a, b in zip(names[1:], values, values[1:]):
        out += f" {'<' if a < b else '>' if a > b else '='} {name} {b:.{digits}f}"
    return out


def order_verdict(table: list[dict], kind: str, rising: bool) -> dict:
    """Does the mean training error of ``kind`` nets rise (``rising``) or fall *strictly* from each depth to the
    next? A tie anywhere answers "no"."""
    rows = _rows(table, kind)
    errors = [r["train_error"] for r in rows]
    holds = all((b > a) if rising else (b < a) for a, b in pairwise(errors))
    return {"answer": YES if holds else NO, "nets": [r["net"] for r in rows], "train_errors": errors,
            "claim": f"{KINDS[kind]} nets train {'worse' if rising else 'better'} as they get deeper "
                     f"(training error {'rises' if rising else 'falls'} strictly with depth)",
            "evidence": _chain([r["net"] for r in rows], errors, 2)}


def margin_verdict(table: list[dict], kind: str, rising: bool) -> dict:
    """Is the gap between the shallowest and the deepest net, in the expected direction, more than twice the larger
    of their two standard deviations over seeds? "No" only when it goes the other way by more than that; a gap inside
    the spread is "not shown". With one seed there is no spread to compare with: "n/a"."""
    rows = _rows(table, kind)
    shallow, deep = rows[0], rows[-1]
    gap = (deep["train_error"] - shallow["train_error"]) * (1 if rising else -1)
    spread = max(shallow["train_error_std"], deep["train_error_std"])
    seeds = min(shallow["seeds"], deep["seeds"])
    answer = NOT_MEASURED if seeds < 2 else _answer([_beyond(gap, 2 * spread)])
    return {"answer": answer, "shallow": shallow["net"], "deep": deep["net"], "gap": gap, "larger_std": spread,
            "seeds": seeds,
            "claim": f"the {shallow['net']} vs {deep['net']} gap exceeds twice the larger standard deviation",
            "evidence": (f"gap {gap:.2f} points vs 2 x {spread:.2f}" if seeds >= 2
                         else "one seed: no spread to compare the gap with")}


def cure_verdict(table: list[dict]) -> dict:
    """Residual learning cures degradation: at every depth above the shallowest, the residual net's training error
    is below its plain twin's by more than twice the larger of their standard deviations, and no residual net is
    worse than the shallowest residual net by more than twice the shallowest's own standard deviation (its seeds'
    noise). A check that the seeds' spread decides neither way (a gap inside twice the larger spread) makes the
    answer "not shown", never "yes" or "no"; one that fails beyond it, "no". With one seed: "n/a"."""
    plain = {r["depth"]: r for r in _rows(table, "plain")}
    residual = _rows(table, "resnet")
    base, deeper = residual[0], [r for r in residual[1:] if r["depth"] in plain]
    if not deeper:
        raise ValueError("the cure verdict needs a plain/residual pair deeper than the shallowest residual net")
    claim = (f"residual learning cures degradation: at every depth above {base['depth']} the residual net trains "
             f"better than its plain twin by more than twice the larger standard deviation, and no residual net is "
             f"worse than {base['net']} by more than twice its spread")
    seeds = min(r["seeds"] for r in [base, *deeper, *(plain[r["depth"]] for r in deeper)])
    if seeds < 2:
        return {"answer": NOT_MEASURED, "claim": claim, "seeds": seeds,
                "evidence": "one seed: no spread to compare the gaps with"}
    outcomes, evidence = [], []  # each check: True (holds), False (fails beyond the spread), None (inside it)
    for r in deeper:
        twin = plain[r["depth"]]
        gap, spread = twin["train_error"] - r["train_error"], max(twin["train_error_std"], r["train_error_std"])
        outcomes.append(_beyond(gap, 2 * spread))
        evidence.append(f"{twin['net']} - {r['net']} = {gap:.2f} {'>' if gap > 2 * spread else '<='} "
                        f"2 x {spread:.2f}")
    noise = base["train_error_std"]
    for r in deeper:
        excess, spread = r["train_error"] - base["train_error"], max(r["train_error_std"], noise)
        outcomes.append(True if excess <= 2 * noise else False if excess > 2 * spread else None)
        evidence.append(f"{r['net']} - {base['net']} = {excess:.2f} " + (
            f"<= 2 x {noise:.2f}" if excess <= 2 * noise else f"> 2 x {spread:.2f}" if excess > 2 * spread else
            f"> 2 x {noise:.2f} ({base['net']}'s spread) but <= 2 x {spread:.2f} ({r['net']}'s)"))
    return {"answer": _answer(outcomes), "claim": claim, "seeds": seeds, "evidence": "; ".join(evidence)}


def budget_note(verdict: dict, iterations: int | None) -> dict:
    """A residual-ordering verdict that is not "yes" says at what budget it was tested and what the paper used: in
    a few hundred iterations the deeper residual nets have not caught up yet."""
    if verdict["answer"] != YES and iterations:
        verdict["budget"] = (f"tested at {iterations:,} iterations per cell; the paper's ordering comes from "
                             f"{PAPER_ITERATIONS:,}")
    return verdict


def verdicts(table: list[dict], iterations: int | None = None) -> dict:
    """Figure 6's findings, in the mean over seeds: plain nets order worse with depth and residual nets better,
    each with a shallowest-vs-deepest margin beyond the seed spread, and residual learning curing the degradation.
    ``iterations``: each cell's training length, which a "no" for the residual ordering is reported with. A study of
    the residual nets alone (the ``depth`` profile) gets the residual verdicts only: the others need plain nets."""
    residual = {"residual_order": budget_note(order_verdict(table, "resnet", rising=False), iterations),
                "residual_margin": budget_note(margin_verdict(table, "resnet", rising=False), iterations)}
    if not any(n["kind"] == "plain" for n in table):
        return residual
    return {"plain_order": order_verdict(table, "plain", rising=True), "residual_order": residual["residual_order"],
            "plain_margin": margin_verdict(table, "plain", rising=True),
            "residual_margin": residual["residual_margin"], "residual_cures": cure_verdict(table)}


def _weaker(a: dict, b: dict) -> bool | None:
    """Does net ``a`` respond more weakly than net ``b`` (mean layer std)? True or False when the difference of means
    is beyond twice the larger of their seeds' standard deviations, None inside it or with one seed of either."""
    seeds_a, seeds_b = a.get("seed_means", [a["mean_std"]]), b.get("seed_means", [b["mean_std"]])
    if min(len(seeds_a), len(seeds_b)) < 2:
        return None
    return _beyond(b["mean_std"] - a["mean_std"], 2 * max(statistics.stdev(seeds_a), statistics.stdev(seeds_b)))


def _spread_note(nets: list[dict]) -> str:
    seeds = [n.get("seed_means", [n["mean_std"]]) for n in nets]
    if min(len(s) for s in seeds) < 2:
        return "; one seed: no spread to test the differences against"
    return f"; seed spread (std) up to {max(statistics.stdev(s) for s in seeds):.3f}"


def response_verdicts(responses: dict[str, dict]) -> dict:
    """Figure 7's two observations from the mean layer response std of each net (``responses`` maps a net name to
    ``kind``, ``depth``, ``mean_std`` and the seeds' ``seed_means``): residual nets respond more weakly than the
    plain net of the same depth, and deeper residual nets more weakly still (from each depth to the next). Each
    difference counts only beyond twice the larger seed spread: "no" when one goes the other way beyond it, "not
    shown" when one is inside it (or there is one seed)."""
    by = {(r["kind"], r["depth"]): r for r in responses.values()}
    depths = sorted(d for k, d in by if k == "resnet")
    paired = [d for d in depths if ("plain", d) in by]
    residual = [by[("resnet", d)] for d in depths]
    plain_pairs = [(by[("resnet", d)], by[("plain", d)]) for d in paired]
    return {
        "residual_weaker_than_plain": {
            "answer": NOT_MEASURED if not paired else _answer([_weaker(r, p) for r, p in plain_pairs]),
            "claim": "residual nets respond more weakly than plain nets of the same depth (mean layer std)",
            "evidence": (", ".join(f"{d}: {r['mean_std']:.3f} vs {p['mean_std']:.3f}"
                                   for d, (r, p) in zip(paired, plain_pairs))
                         + _spread_note([n for pair in plain_pairs for n in pair])
                         if paired else "no plain net in this study")},
        "deeper_residual_weaker": {
            "answer": NOT_MEASURED if len(depths) < 2 else _answer([_weaker(b, a) for a, b in pairwise(residual)]),
            "claim": "deeper residual nets respond more weakly still (mean layer std falls with depth)",
            "evidence": _chain([f"resnet{d}" for d in depths], [r["mean_std"] for r in residual], 3)
                        + (_spread_note(residual) if len(depths) >= 2 else "")},
    }


def verdict_lines(found: dict) -> list[str]:
    """One Markdown bullet per verdict: the claim, the answer in bold, the numbers it came from."""
    return [f"- {v['claim'][0].upper()}{v['claim'][1:]}: **{v['answer']}** ({v['evidence']})"
            + (f"; {v['budget']}" if v.get("budget") else "") for v in found.values()]

"""What a comparison of ResNet and its successors says, computed from its own numbers as the degradation study's
verdicts are: which successors reach ResNet-20's accuracy with fewer MACs, whether DenseNet beats the ResNet of
about its parameters, and whether the transformer reaches the CNNs in the budget. Plain functions of the comparison's
per-model rows (``model``, ``lineage``, ``params``, ``macs``, ``top1``, ``top1_std``, ``seeds``), so every statement
is tested on known numbers.

"Reaches" and "beats" allow for the seeds: a model reaches another when its mean top-1 is at most twice the larger
of their standard deviations below it, and beats it when it is above by more than that. With one seed there is no
spread: the plain comparison of means decides, and the statement says so.
"""

from __future__ import annotations

YES, NO, NOT_MEASURED = "yes", "no", "n/a"
BASELINE = "resnet20"  # the paper's smallest CIFAR ResNet: the yardstick of "reaches ResNet's accuracy"
RESNET_LINEAGE = "resnet"  # the paper's nets and their twins; every other lineage is a successor


def _margin(a: dict, b: dict) -> float:
    """Twice the larger standard deviation of two rows: what a difference of means must exceed to count."""
    return 2 * max(a["top1_std"], b["top1_std"])


def reaches(a: dict, b: dict) -> bool:
    """``a``'s mean top-1 is at least ``b``'s less the margin."""
    return a["top1"] >= b["top1"] - _margin(a, b)


def beats(a: dict, b: dict) -> bool:
    """``a``'s mean top-1 is above ``b``'s by more than the margin."""
    return a["top1"] - b["top1"] > _margin(a, b)


def _fmt(r: dict) -> str:
    return f"{r['model']} {r['top1']:.2f} ± {r['top1_std']:.2f}"


def _seeds_note(*rows: dict) -> str:
    return "; one seed: means compared without a spread" if min(r["seeds"] for r in rows) < 2 else ""


def cheaper_successors_reaching(table: list[dict], baseline: str = BASELINE) -> dict:
    """The successors that reach ``baseline``'s accuracy with fewer MACs (the answer is "yes" when there is one)."""
    base = next((r for r in table if r["model"] == baseline), None)
    successors = [r for r in table if r["lineage"] != RESNET_LINEAGE]
    claim = f"successors reach {baseline}'s accuracy with fewer MACs"
    if base is None or not successors:
        return {"answer": NOT_MEASURED, "claim": claim, "models": [],
                "evidence": f"needs {baseline} and at least one successor in the comparison"}
    cheaper = [r for r in successors if r["macs"] < base["macs"]]
    found = [r for r in cheaper if reaches(r, base)]
    evidence = (f"{baseline}: {base['top1']:.2f} ± {base['top1_std']:.2f} at {base['macs'] / 1e6:.1f} M MACs; "
                + ("; ".join(f"{_fmt(r)} at {r['macs'] / 1e6:.1f} M ({'reaches' if r in found else 'does not reach'})"
                             for r in cheaper)
                   if cheaper else "no successor has fewer MACs"))
    return {"answer": YES if found else NO, "claim": claim, "models": [r["model"] for r in found],
            "evidence": evidence + _seeds_note(base, *cheaper)}


def densenet_beats_resnet(table: list[dict]) -> dict:
    """Does DenseNet beat the ResNet (a residual net of the paper's, not a plain one) whose parameter count is
    nearest its own?"""
    dense = next((r for r in table if r["lineage"] == "densenet"), None)
    resnets = [r for r in table if r["lineage"] == RESNET_LINEAGE and r["model"].startswith("resnet")]
    if dense is None or not resnets:
        return {"answer": NOT_MEASURED, "claim": "DenseNet beats the ResNet of about its parameters",
                "evidence": "needs a DenseNet and a ResNet in the comparison"}
    twin = min(resnets, key=lambda r: abs(r["params"] - dense["params"]))
    won = beats(dense, twin)
    relation = "beats" if won else ("is beaten by" if beats(twin, dense) else "is within the spread of")
    return {"answer": YES if won else NO, "densenet": dense["model"], "resnet": twin["model"],
            "claim": f"DenseNet ({dense['model']}) beats the ResNet of about its parameters ({twin['model']})",
            "evidence": (f"{_fmt(dense)} ({dense['params']:,} parameters) {relation} {_fmt(twin)} "
                         f"({twin['params']:,}); margin 2 x {max(dense['top1_std'], twin['top1_std']):.2f}"
                         + _seeds_note(dense, twin))}


def transformer_reaches_cnns(table: list[dict], baseline: str = BASELINE) -> dict:
    """Does the vision transformer reach ``baseline`` (the CNN yardstick) in this budget, and where does it rank
    among the CNNs?"""
    vit = next((r for r in table if r["lineage"] == "transformer"), None)
    base = next((r for r in table if r["model"] == baseline), None)
    claim = f"the transformer reaches the CNNs in this budget ({baseline}'s accuracy)"
    if vit is None or base is None:
        return {"answer": NOT_MEASURED, "claim": claim,
                "evidence": f"needs a transformer and {baseline} in the comparison"}
    cnns = sorted((r for r in table if r["lineage"] != "transformer"), key=lambda r: -r["top1"])
    below = sum(r["top1"] > vit["top1"] for r in cnns)
    return {"answer": YES if reaches(vit, base) else NO, "transformer": vit["model"],
            "claim": claim,
            "evidence": (f"{_fmt(vit)} against {_fmt(base)}; {below} of {len(cnns)} CNNs score higher"
                         + _seeds_note(vit, base))}


def statements(table: list[dict]) -> dict:
    return {"cheaper_successors": cheaper_successors_reaching(table),
            "densenet_vs_resnet": densenet_beats_resnet(table),
            "transformer_vs_cnns": transformer_reaches_cnns(table)}


def statement_lines(found: dict) -> list[str]:
    """One Markdown bullet per statement: the claim, the answer in bold, the numbers it came from."""
    return [f"- {s['claim'][0].upper()}{s['claim'][1:]}: **{s['answer']}** ({s['evidence']})" for s in found.values()]

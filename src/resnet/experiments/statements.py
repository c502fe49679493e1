"""What a comparison of ResNet and its successors says, computed from its own numbers as the degradation study's
verdicts are: which successors reach ResNet-20's accuracy with fewer MACs and with fewer parameters, whether DenseNet
beats the ResNet of about its parameters, and whether the transformer reaches the CNNs. Plain functions of the
comparison's per-model rows (``model``, ``lineage``, ``params``, ``macs``, ``top1``, ``top1_std``, ``seeds``), so
every statement is tested on known numbers; each carries the conditions it was measured under.

"Reaches" and "beats" allow for the seeds: a model reaches another when its mean top-1 is at most twice the larger
of their standard deviations below it, and beats it when it is above by more than that. A "no" needs a difference
beyond that margin and at least two seeds of each model; otherwise the answer is "not shown", never "no" (one seed
measures no spread, and a gap inside the spread refutes nothing).
"""

from __future__ import annotations

from .verdicts import NO, NOT_MEASURED, NOT_SHOWN, YES  # the answers the degradation study gives too
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


def _answer(shown: bool, refuted: bool, *rows: dict) -> str:
    """Yes when shown; no only when refuted beyond the margin with a spread measured (2 seeds or more); else not
    shown."""
    if shown:
        return YES
    return NO if refuted and min(r["seeds"] for r in rows) >= 2 else NOT_SHOWN


def cheaper_successors_reaching(table: list[dict], baseline: str = BASELINE, cost: str = "macs") -> dict:
    """The successors that reach ``baseline``'s accuracy at a lower ``cost`` (``macs`` or ``params``): yes when there
    is one; no when every cheaper one falls short beyond the margin."""
    base = next((r for r in table if r["model"] == baseline), None)
    successors = [r for r in table if r["lineage"] != RESNET_LINEAGE]
    what = "MACs" if cost == "macs" else "parameters"
    claim = f"successors reach {baseline}'s accuracy with fewer {what}"
    if base is None or not successors:
        return {"answer": NOT_MEASURED, "claim": claim, "models": [],
                "evidence": f"needs {baseline} and at least one successor in the comparison"}

    def amount(r: dict) -> str:
        return f"{r[cost] / 1e6:.1f} M" if cost == "macs" else f"{r[cost]:,}"

    cheaper = [r for r in successors if r[cost] < base[cost]]
    if not cheaper:
        return {"answer": NOT_MEASURED, "claim": claim, "models": [],
                "evidence": f"no successor in the comparison has fewer {what} than {baseline} ({amount(base)})"}
    found = [r for r in cheaper if reaches(r, base)]
    evidence = (f"{baseline}: {base['top1']:.2f} ± {base['top1_std']:.2f} at {amount(base)}; "
                + "; ".join(f"{_fmt(r)} at {amount(r)} ({'reaches' if r in found else 'does not reach'})"
                            for r in cheaper))
    return {"answer": _answer(bool(found), True, base, *cheaper), "claim": claim,
            "models": [r["model"] for r in found], "evidence": evidence + _seeds_note(base, *cheaper)}


def densenet_beats_resnet(table: list[dict]) -> dict:
    """Does DenseNet beat the ResNet (a residual net of the paper's, not a plain one) whose parameter count is
    nearest its own? Every DenseNet in the table is paired, smallest first: yes when each beats its ResNet, no when
    each is beaten, and "not shown" when the pairs disagree or lie within the spread."""
    dense = sorted((r for r in table if r["lineage"] == "densenet"), key=lambda r: r["params"])
    resnets = [r for r in table if r["lineage"] == RESNET_LINEAGE and r["model"].startswith("resnet")]
    if not dense or not resnets:
        return {"answer": NOT_MEASURED, "claim": "DenseNet beats the ResNet of about its parameters",
                "evidence": "needs a DenseNet and a ResNet in the comparison"}
    pairs = [(d, min(resnets, key=lambda r: abs(r["params"] - d["params"]))) for d in dense]
    relations = ["beats" if beats(d, twin) else ("is beaten by" if beats(twin, d) else "is within the spread of")
                 for d, twin in pairs]
    rows = [r for pair in pairs for r in pair]
    return {"answer": _answer(all(r == "beats" for r in relations), all(r == "is beaten by" for r in relations),
                              *rows),
            "pairs": [[d["model"], t["model"]] for d, t in pairs],
            "claim": (f"DenseNet ({', '.join(d['model'] for d, _ in pairs)}) beats the ResNet of about its "
                      f"parameters ({', '.join(t['model'] for _, t in pairs)})"),
            "evidence": "; ".join(f"{_fmt(d)} ({d['params']:,} parameters) {relation} {_fmt(t)} ({t['params']:,}); "
                                  f"margin 2 x {max(d['top1_std'], t['top1_std']):.2f}"
                                  for (d, t), relation in zip(pairs, relations))
            + _seeds_note(*rows)}


def transformer_reaches_cnns(table: list[dict], baseline: str = BASELINE) -> dict:
    """Does the vision transformer reach ``baseline`` (the CNN yardstick), and where does it rank among the CNNs?
    With several transformers the most accurate one answers, the case most in the claim's favour. When it does not
    reach, the known reason is given with the numbers."""
    vits = [r for r in table if r["lineage"] == "transformer"]
    vit = max(vits, key=lambda r: r["top1"], default=None)
    base = next((r for r in table if r["model"] == baseline), None)
    claim = f"the transformer reaches the CNNs ({baseline}'s accuracy)"
    if vit is None or base is None:
        return {"answer": NOT_MEASURED, "claim": claim,
                "evidence": f"needs a transformer and {baseline} in the comparison"}
    cnns = [r for r in table if r["lineage"] != "transformer"]
    below = sum(r["top1"] > vit["top1"] for r in cnns)
    answer = _answer(reaches(vit, base), True, vit, base)
    best = f" (the best of {len(vits)} transformers)" if len(vits) > 1 else ""
    reason = ("; a transformer lacks the convolution's built-in locality and translation equivariance and learns "
              "them from data: it needs far more images than a CNN to reach one (Dosovitskiy et al. 2021, Sec. 4.3)"
              if answer != YES else "")
    return {"answer": answer, "transformer": vit["model"], "claim": claim,
            "evidence": (f"{_fmt(vit)}{best} against {_fmt(base)}; {below} of {len(cnns)} CNNs score higher"
                         + _seeds_note(vit, base) + reason)}


def statements(table: list[dict], conditions: str = "") -> dict:
    """Every statement, each carrying ``conditions`` (what was measured where: data, images or time, seeds,
    machine and precision)."""
    found = {"cheaper_successors": cheaper_successors_reaching(table),
             "smaller_successors": cheaper_successors_reaching(table, cost="params"),
             "densenet_vs_resnet": densenet_beats_resnet(table),
             "transformer_vs_cnns": transformer_reaches_cnns(table)}
    return {key: {**s, "conditions": conditions} for key, s in found.items()}


def statement_lines(found: dict) -> list[str]:
    """One Markdown bullet per statement: the claim with its conditions, the answer in bold, the numbers it came
    from."""
    return [f"- {s['claim'][0].upper()}{s['claim'][1:]}{', ' + s['conditions'] if s.get('conditions') else ''}: "
            f"**{s['answer']}** ({s['evidence']})" for s in found.values()]

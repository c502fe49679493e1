"""Very deep nets (the paper's Sec. 4.2, "Exploring over 1000 layers"): do plain-N and ResNet-N of a depth like 1202
learn at all? Both train for their first few hundred steps on the very same batches, from the same seed, with the
same optimizer; what they show is their training loss step by step and the gradient norm of each stage's 3x3 layers
at initialisation: whether those stay finite and of one order across the stages, and whether the loss falls. (With
BN, a plain net's gradients at initialisation grow towards its input; at 1202 layers they are no longer finite.)

The budget is minutes, not the paper's 64k iterations: this shows whether such a net *trains*, not what it reaches.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F

from ..data import Augment, MemoryLoader, dataset_stats, open_split
from ..device import autocast, cpu_summary, resolve_device, resolve_precision
from ..writes import make_dir, write_json, write_text
from ..models import create_model
from ..plots import plot_very_deep
from ..table import format_table
from .gradients import conv_grad_norms, stage_of
from .responses import layers_3x3

STEPS, BATCH_SIZE = 200, 16
LR_AT_128, MOMENTUM, WEIGHT_DECAY, WARMUP = 0.1, 0.9, 1e-4, 50  # the study's recipe; lr scaled linearly to the batch
GRADIENT_BATCHES = 4  # batches the gradient norms at initialisation are averaged over
LEARNS_BY = 20.0  # "learns": the training error of its last 10% of steps is this many points below chance


def stage_norms(model: torch.nn.Module, batches: list) -> dict[str, float]:
    """Mean gradient norm of the 3x3 layers of each stage, at the model's current weights."""
    convs = [conv for conv, _ in layers_3x3(model)]
    norms = conv_grad_norms(model, batches)
    return {stage: statistics.fmean(n for n, c in zip(norms, convs) if stage_of(c, model.stage_names) == stage)
            for stage in model.stage_names}


def train_first_steps(net: str, batches: list, device: torch.device, precision: str, seed: int, lr: float,
                      log: Callable, num_classes: int = 10) -> dict:
    """``net`` from ``seed``: its stage gradient norms at initialisation, then one SGD step per batch (the study's
    optimizer, linear warm-up, no decay), its loss recorded at every step."""
    torch.manual_seed(seed)
    model = create_model(net, num_classes=num_classes, in_chans=batches[0][0].shape[1]).to(device)
    model = model.to(memory_format=torch.channels_last)
    norms = stage_norms(model, batches[:GRADIENT_BATCHES])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                                nesterov=False)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / WARMUP))
    losses, errors, diverged, start = [], [], None, time.perf_counter()
    model.train()
    for step, (images, labels) in enumerate(batches, 1):
        with autocast(device, precision):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        if not torch.isfinite(loss):  # diverged: its weights are lost, and so is every later step
            diverged = step
            log(f"  {net} step {step}: the loss is not finite; it stops here")
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        warmup.step()
        losses.append(float(loss.detach()))
        errors.append(100.0 * float((logits.argmax(1) != labels).float().mean()))
        if step % 50 == 0 or step == len(batches):
            log(f"  {net} step {step}/{len(batches)}: loss {statistics.fmean(losses[-50:]):.3f} "
                f"({time.perf_counter() - start:.0f} s)")
    tenth = max(1, len(batches) // 10)
    last_error = statistics.fmean(errors[-tenth:]) if errors and diverged is None else 100.0 * (1 - 1 / num_classes)
    return {"net": net, "stage_norms": norms, "loss": losses, "train_error": errors, "diverged_at": diverged,
            "first_loss": statistics.fmean(losses[:tenth]) if losses else None,
            "last_loss": statistics.fmean(losses[-tenth:]) if losses and diverged is None else None,
            "first_error": statistics.fmean(errors[:tenth]) if errors else None, "last_error": last_error,
            "learns": diverged is None and last_error < 100.0 * (1 - 1 / num_classes) - LEARNS_BY,
            "seconds": time.perf_counter() - start, "parameters": sum(p.numel() for p in model.parameters())}


def same_batches(data: str, steps: int, batch_size: int, seed: int, device: torch.device) -> tuple[list, int]:
    """``steps`` training batches of ``data`` (normalised, pad-crop and flip as the study's recipe), drawn once so
    that both nets see the very same images in the very same order; and the data's number of classes."""
    split = open_split(data, "train", limit=steps * batch_size)
    mean, std = dataset_stats(data, split.images.shape[1])
    loader = MemoryLoader(split, batch_size, device=device, mean=mean, std=std, train=True,
                          augment=Augment(4, True, 0.0), seed=seed)
    return [(x.clone(), y.clone()) for x, y in loader.epoch(0)][:steps], len(split.classes)


def very_deep(depth: int = 1202, steps: int = STEPS, batch_size: int = BATCH_SIZE, seed: int = 0,
              data: str = "fashion-mnist", out: str | Path | None = None, device: str = "auto",
              log: Callable = print) -> dict:
    """Train plain-``depth`` and ResNet-``depth`` for ``steps`` steps on the same batches; write ``very_deep.png``,
    ``results.md`` and ``results.json`` into ``out``; return the results."""
    out = Path(out or f"runs/very-deep-{depth}")
    make_dir(out, "output directory")
    dev = resolve_device(device)
    precision = resolve_precision("auto", dev)
    batches, classes = same_batches(data, steps, batch_size, seed, dev)
    lr = LR_AT_128 * batch_size / 128
    log(f"plain{depth} and resnet{depth}: {len(batches)} steps of {batch_size} {data} images each, the same for "
        f"both, {precision} on {dev}")
    nets = [train_first_steps(f"{kind}{depth}", batches, dev, precision, seed, lr, log, num_classes=classes)
            for kind in ("plain", "resnet")]
    plain, residual = nets
    results = {"learns_where_plain_does_not": "yes" if residual["learns"] and not plain["learns"] else "no",
               "depth": depth, "data": data, "steps": len(batches), "batch_size": batch_size, "seed": seed,
               "lr": lr, "warmup": WARMUP, "precision": precision, "device": str(dev),
               "machine": cpu_summary() if dev.type == "cpu" else torch.cuda.get_device_name(dev), "nets": nets}
    plot_very_deep(nets, out / "very_deep.png", f"The first {len(batches)} steps of {depth}-layer nets on {data}",
                   classes=classes)
    write_json(out / "results.json", results)
    write_text(out / "results.md", results_md(results))
    log(results_md(results))
    return results


def results_md(r: dict) -> str:
    plain, residual = r["nets"]
    stages = list(plain["stage_norms"])
    rows = [[n["net"], f"{n['parameters']:,}", *(f"{n['stage_norms'][s]:.3g}" for s in stages),
             f"{_num(n['first_loss'], 3)} -> {_last(n, 'last_loss', 3)}",
             f"{_num(n['first_error'], 1)} -> {_last(n, 'last_error', 1)}", "yes" if n["learns"] else "no",
             f"{n['seconds'] / 60:.1f}"] for n in r["nets"]]
    table = format_table(["net", "parameters", *(f"grad norm {s} at init" for s in stages),
                          "loss, first -> last 10%", "training error %, first -> last 10%", "learns", "minutes"],
                         rows, align="lr" + "r" * len(stages) + "rrlr")
    verdict = r["learns_where_plain_does_not"]
    return "\n".join([
        f"# Very deep nets: the first {r['steps']} steps of {r['depth']}-layer nets", "",
        f"plain{r['depth']} and resnet{r['depth']} (shortcut A), seed {r['seed']}, trained on the same {r['steps']} "
        f"batches of {r['batch_size']} {r['data']} images (pad-4 crop and flip), SGD momentum {MOMENTUM}, weight "
        f"decay {WEIGHT_DECAY:g}, lr {r['lr']:g} after a {r['warmup']}-step linear warm-up (the study's recipe, its lr "
        f"scaled to the batch). Machine: {r['machine']}, {r['precision']}. Gradient norms: the mean L2 norm of the "
        f"loss gradient of each stage's 3x3 weights at initialisation, fp32, over {GRADIENT_BATCHES} batches. "
        f"\"Learns\": the training error of the last 10% of steps (on the batches as they were trained on) is more "
        f"than {LEARNS_BY:g} points below chance.", "",
        table, "",
        f"- The {r['depth']}-layer residual net learns where the plain one does not: **{verdict}** (training "
        f"error % {_num(residual['first_error'], 1)} -> {_last(residual, 'last_error', 1)} against "
        f"{_num(plain['first_error'], 1)} -> {_last(plain, 'last_error', 1)})", "",
        "![the first steps of very deep nets](very_deep.png)", ""])


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _last(net: dict, key: str, digits: int) -> str:
    """A net's figure over its last steps, or the step where its loss stopped being finite."""
    return f"diverged at step {net['diverged_at']}" if net["diverged_at"] else _num(net[key], digits)

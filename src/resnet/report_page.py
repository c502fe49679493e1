"""``report.html``: one self-contained page per run (every image inlined, no script, no network) that says what was
trained and how well, and shows what the model gets wrong: the curves, test top-1/top-5, per-class accuracy, the
confusion matrix, the test images it got most confidently wrong and, with captum installed, Grad-CAM of a few of them.

:func:`write_report` builds the page from a finished run's files and the mistakes of its final test (the trainer
gathers them during that test); :func:`report_run` is `resnet report`: it evaluates a run's model on its test set
again to gather them, for runs made before this page existed too.
"""

from __future__ import annotations

import base64
import datetime
import html
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import torch
import yaml
from matplotlib import colormaps
from PIL import Image
from torch import nn

from . import __version__
from .device import resolve_device, resolve_precision
from .errors import UserError
from .evaluate import evaluate_on_test_set, run_test_tta
from .gradcam import gradcam, seen_image
from .writes import write_text
from .mistakes import Mistake, MistakeCollector, with_images
from .runs import run_dir_of
from .weights import ModelCard, load_model_and_card
from .weights.card import card_beside

REPORT = "report.html"
GRADCAM_COUNT = 6  # mistakes explained with Grad-CAM: the most confident ones over all classes
GALLERY_CLASSES = 30  # at most this many classes in the gallery (those with the lowest accuracy), so that the page
#                       of a 1000-class run stays a page
THUMB = 100  # display size of a gallery image in CSS pixels (small images are scaled up, pixelated)

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:72em;padding:0 1.5em;
color:#1b1f24;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
.lead{font-size:1.15em}.lead b{font-size:1.3em}.muted{color:#57606a}
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #eaeef2;text-align:left;
vertical-align:top}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#eaeef2;width:12em;height:.8em;display:inline-block;vertical-align:middle}
.bar span{background:#2f81f7;height:100%;display:block}
img.figure{max-width:100%;height:auto}
.gallery{display:flex;flex-wrap:wrap;gap:.9em}
figure{margin:0;width:calc(THUMBpx + 1em);font-size:.82em}
figure img{width:THUMBpx;height:THUMBpx;object-fit:contain;image-rendering:pixelated;background:#000;display:block}
figcaption{margin-top:.25em;overflow-wrap:anywhere}
.cam figure{width:calc(3 * THUMBpx + 1em)}.cam .row{display:flex;gap:.4em}
code{background:#f6f8fa;padding:.1em .3em;border-radius:3px}
""".replace("THUMB", str(THUMB))


# ------------------------------------------------------------------------------------------------- the page


def write_report(run_dir: str | Path, mistakes: list[list[Mistake]] | None = None, loader=None,
                 model: nn.Module | None = None, card: ModelCard | None = None, gallery_note: str | None = None,
                 out: str | Path | None = None) -> Path:
    """Write ``run_dir/report.html`` (or ``out``) from the run's files (results.json, config.yaml, run.json,
    model.json, curves.png, confusion.png) and the ``mistakes`` of its final test (per true class, most confident
    first), whose images are read back from the test ``loader``; without them the gallery says ``gallery_note``.
    ``model``, when given, draws Grad-CAM of the most confident mistakes."""
    run_dir = Path(run_dir)
    results = _read_json(run_dir / "results.json")
    card = card or card_beside(run_dir / "model.safetensors")
    classes = list(card.classes)
    title = f"{results['model']} on {results['data']}"
    parts = [f"<h1>{_e(title)}</h1>", _lead(results), "<h2>What was trained</h2>", _facts(run_dir, results),
             "<h2>Training curves</h2>", _figure(run_dir / "curves.png", "training curves"),
             "<h2>Per-class accuracy</h2>", _per_class(results.get("per_class", [])),
             "<h2>Confusion matrix</h2>", _figure(run_dir / "confusion.png", "confusion matrix"),
             "<h2 id=\"mistakes\">Most confidently wrong</h2>"]
    if mistakes is None or loader is None:
        parts.append(f"<p class=\"muted\">{_e(gallery_note or 'No gallery: the mistakes were not gathered.')}</p>")
    else:
        mistakes, dropped = gallery_classes(mistakes, results.get("per_class", []))
        mistakes = with_images(mistakes, loader)
        parts.append(_gallery(mistakes, classes, card, dropped))
        parts.append(_gradcam_section(mistakes, classes, card, model))
    parts.append(f"<footer><p class=\"muted\">Written by resnet {_e(__version__)} on "
                 f"{datetime.date.today().isoformat()}. <code>resnet report {_e(str(run_dir))}</code> writes it "
                 f"again.</p></footer>")
    page = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}: resnet report</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    return write_text(Path(out) if out else run_dir / REPORT, page, "report page")


def _lead(results: dict) -> str:
    top5 = results.get("test_top5")
    five = (f" &middot; top-5 <b id=\"test-top5\">{top5:.2f}%</b>" if top5 is not None
            else " &middot; top-5 <span id=\"test-top5\">not reported (5 classes or fewer)</span>")
    tta = results.get("test_tta") or "none"
    return (f"<p class=\"lead\">test top-1 <b id=\"test-top1\">{results['test_top1']:.2f}%</b>{five} &middot; "
            f"loss {results['test_loss']:.4f} on <span id=\"test-count\">{results['test_count']:,}</span> images"
            f"{'' if tta == 'none' else f' ({_e(tta)} test-time augmentation)'}</p>")


def _facts(run_dir: Path, results: dict) -> str:
    """What was trained, on what, how, where and for how long."""
    config = _read_yaml(run_dir / "config.yaml")
    run = _read_json(run_dir / "run.json", missing_ok=True)
    optim, schedule = config.get("optim", {}), config.get("schedule", {})
    budget = results.get("budget")
    rows = [
        ("model", f"{results['model']} ({results['parameters']:,} parameters, {results.get('weights', 'final')} "
                  f"weights)"),
        ("data", f"{results['data']} ({len(results.get('per_class', []))} classes, {results['test_count']:,} test "
                 f"images)"),
        ("recipe", f"{config.get('recipe') or 'default'}: {optim.get('name', '?')} lr {run.get('lr', '?')} at batch "
                   f"{run.get('global_batch', config.get('batch_size', '?'))}, {schedule.get('name', '?')} "
                   f"schedule, seed {config.get('seed', '?')}"),
        ("length", f"{results['steps']:,} steps = {results['epochs']:.2f} epochs"),
        ("budget", f"{_duration(budget['seconds'])}: {_duration(budget['seconds_used'])} used to the end of the "
                   f"final test" if budget else "none"),
        ("machine", f"{results.get('machine', 'not recorded')}; {results['device']} x {results['world_size']} "
                    f"process(es), {results['precision']}"),
        ("time", f"{_duration(results['train_minutes'] * 60)} training, {results['test_seconds']:.1f} s final test"),
        ("started", run.get("started", "not recorded")),
        ("run directory", str(run_dir)),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(str(v))}</td></tr>" for k, v in rows)
    return f"<table class=\"facts\">{body}</table>"


def _per_class(per_class: list[dict]) -> str:
    rows = []
    for row in per_class:
        acc = row["accuracy"]
        rows.append(f"<tr><td>{_e(row['class'])}</td><td class=\"num\">{row['count']:,}</td>"
                    f"<td class=\"num accuracy\" data-class=\"{_e(row['class'])}\">{acc:.2f}%</td>"
                    f"<td><span class=\"bar\"><span style=\"width:{acc:.1f}%\"></span></span></td></tr>")
    return ("<table id=\"per-class\"><tr><th>class</th><th class=\"num\">test images</th>"
            "<th class=\"num\">accuracy</th><th></th></tr>" + "".join(rows) + "</table>")


def gallery_classes(mistakes: list[list[Mistake]], per_class: list[dict]) -> tuple[list[list[Mistake]], int]:
    """The mistakes of at most :data:`GALLERY_CLASSES` classes, those of lowest accuracy (the others emptied), and
    how many classes with mistakes were left out."""
    erring = [k for k, kept in enumerate(mistakes) if kept]
    if len(erring) <= GALLERY_CLASSES:
        return mistakes, 0
    accuracy = {k: row["accuracy"] for k, row in enumerate(per_class)}
    shown = set(sorted(erring, key=lambda k: (accuracy.get(k, 0.0), k))[:GALLERY_CLASSES])
    return [kept if k in shown else [] for k, kept in enumerate(mistakes)], len(erring) - len(shown)


def _gallery(mistakes: list[list[Mistake]], classes: list[str], card: ModelCard, dropped: int = 0) -> str:
    if not any(mistakes):
        return "<p>The model got every test image right: there is nothing to show here.</p>"
    more = (f" The {GALLERY_CLASSES} classes of lowest accuracy are shown; {dropped} more classes with mistakes are "
            f"not." if dropped else "")
    parts = ["<p class=\"muted\">For each true class, the test images the model got wrong with the highest "
             f"confidence, as the model saw them (after resizing and cropping).{more}</p>"]
    for k, kept in enumerate(mistakes):
        if not kept:
            continue
        parts.append(f"<h3>true class: {_e(classes[k])}</h3><div class=\"gallery\">")
        for m in kept:
            where = f"<br><span class=\"muted\">{_e(m.name)}</span>" if m.name else ""
            parts.append(f"<figure class=\"mistake\"><img src=\"{_png(seen(m.image, card))}\" alt=\"test image "
                         f"{m.index}\"><figcaption>predicted <b>{_e(classes[m.predicted])}</b> "
                         f"({100 * m.confidence:.1f}%){where}</figcaption></figure>")
        parts.append("</div>")
    return "\n".join(parts)


def _gradcam_section(mistakes: list[list[Mistake]], classes: list[str], card: ModelCard,
                     model: nn.Module | None) -> str:
    """The most confident mistakes with Grad-CAM of the class predicted and of the true class (captum)."""
    head = "<h2>Where the model looked (Grad-CAM)</h2>"
    worst = sorted((m for kept in mistakes for m in kept), key=lambda m: -m.confidence)[:GRADCAM_COUNT]
    if not worst:
        return ""
    if importlib.util.find_spec("captum") is None:
        return head + "<p class=\"muted\">Grad-CAM needs captum: <code>pip install 'resnet[explain]'</code>, then " \
                      "<code>resnet report RUN</code>.</p>"
    if model is None:
        return ""
    device = next(model.parameters()).device
    batch = torch.stack([m.image for m in worst]).to(device)
    was_training = model.training
    model.eval()
    try:
        cams_predicted = gradcam(model, batch, [m.predicted for m in worst]).cpu().numpy()
        cams_true = gradcam(model, batch, [m.true for m in worst]).cpu().numpy()
    except UserError as exc:  # a model Grad-CAM cannot read: the page says so, the rest of it stands
        return head + f"<p class=\"muted\">No Grad-CAM: {_e(str(exc))}.</p>"
    finally:
        model.train(was_training)
    parts = [head, "<p class=\"muted\">The most confident mistakes: the image, then the Grad-CAM (Selvaraju et al. "
                   "2017) of the class the model predicted and of the true class, at its last feature map.</p>",
             "<div class=\"gallery cam\">"]
    for m, cam_p, cam_t in zip(worst, cams_predicted, cams_true):
        image = seen(m.image, card)
        parts.append(
            f"<figure class=\"gradcam\"><div class=\"row\"><img src=\"{_png(image)}\" alt=\"test image {m.index}\">"
            f"<img src=\"{_png(overlay(image, cam_p))}\" alt=\"Grad-CAM of {_e(classes[m.predicted])}\">"
            f"<img src=\"{_png(overlay(image, cam_t))}\" alt=\"Grad-CAM of {_e(classes[m.true])}\"></div>"
            f"<figcaption>true <b>{_e(classes[m.true])}</b>, predicted <b>{_e(classes[m.predicted])}</b> "
            f"({100 * m.confidence:.1f}%); middle: Grad-CAM of {_e(classes[m.predicted])}, right: of "
            f"{_e(classes[m.true])}</figcaption></figure>")
    parts.append("</div>")
    return "\n".join(parts)


# -------------------------------------------------------------------------------------------------- pictures


def seen(image: torch.Tensor, card: ModelCard) -> np.ndarray:
    """A normalised (C, H, W) image back to what the model saw, as (H, W, 3) uint8 (grey in three equal channels)."""
    pixels = (seen_image(image.float(), card) * 255).round().astype(np.uint8)
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A [0, 1] heatmap in the turbo colour map over an (H, W, 3) uint8 image, as `resnet explain` draws it."""
    heat = colormaps["turbo"](cam)[..., :3] * 255
    return ((1 - alpha) * image + alpha * heat).round().clip(0, 255).astype(np.uint8)


def _png(pixels: np.ndarray) -> str:
    """An inlined PNG, at most twice the gallery's display size (sharp on high-density screens, small in the page)."""
    image = Image.fromarray(pixels)
    if max(image.size) > 2 * THUMB:
        image.thumbnail((2 * THUMB, 2 * THUMB), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p class=\"muted\">{_e(path.name)} is missing from the run directory.</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img class=\"figure\" src=\"data:image/png;base64,{data}\" alt=\"{_e(alt)}\">"


# ------------------------------------------------------------------------------------------------ reading


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def _read_json(path: Path, missing_ok: bool = False) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if missing_ok:
            return {}
        if path.name == "results.json":
            raise UserError(f"{path.parent} has no results.json: the run has not finished (continue it with "
                            f"`resnet train --resume {path.parent}`) or it is not a run directory") from None
        raise UserError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read ({exc}); the run directory is damaged") from None


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------------------------------ `resnet report`


def report_run(run: str | Path, out: str | Path | None = None, data_root: str | None = None, device: str = "auto",
               precision: str = "auto", batch_size: int = 256, log=print) -> Path:
    """Write ``report.html`` of the finished run ``run`` again (or ``out``): its model is evaluated on its test set
    (with the TTA of its own final test) to gather the mistakes; when that set cannot be read, the page says why and
    has no gallery."""
    run_dir = run_dir_of(run)
    _read_json(run_dir / "results.json")  # a finished run, or one clear sentence
    dev = resolve_device(device)
    model, card = load_model_and_card(run_dir, dev)
    collector = MistakeCollector(len(card.classes))
    note = None
    try:
        evaluation = evaluate_on_test_set(model, card, str(run_dir), None, data_root, run_test_tta(run_dir),
                                          batch_size, dev, resolve_precision(precision, dev), observe=collector)
        mistakes, loader = collector.mistakes(), evaluation.loader
        log(f"evaluated {evaluation.result.count:,} test images again: top-1 {evaluation.result.top1:.2f}%")
    except UserError as exc:
        mistakes, loader, note = None, None, f"No gallery: the test set could not be read ({exc})."
        log(f"warning: {note}")
    return write_report(run_dir, mistakes, loader, model, card, gallery_note=note, out=out)


"""The report page: what it gathers (the most confident mistakes), what it shows (checked in headless Chromium on a
real run: every image loads, the numbers are results.json's, no console error) and `resnet report` for old runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from resnet.mistakes import Mistake, MistakeCollector, with_images
from resnet.report_page import GALLERY_CLASSES, REPORT, gallery_classes, write_report

from .conftest import require_module, run_cli

SCREENSHOTS = os.environ.get("RESNET_SCREENSHOTS")  # a folder to keep the screenshots in (default: the test's tmp)


def test_the_collector_keeps_the_most_confident_mistakes_of_each_class_with_their_place_in_the_set():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.05, 0.95]])
    labels = torch.tensor([1, 0, 0, 1, 0])  # wrong: 0 (true 1, 0.9), 1 (0.8), 2 (0.7), 3 (0.6), 4 (0.95)
    images = torch.zeros(5, 1, 1, 1)
    collector = MistakeCollector(2, per_class=2, rank=1, world=2)  # this process evaluates images 1, 3, 5, ...
    collector(images[:3], labels[:3], probs[:3])
    collector(images[3:], labels[3:], probs[3:])
    kept = collector.mistakes()
    assert [(m.index, m.predicted, round(m.confidence, 2)) for m in kept[0]] == [(9, 1, 0.95), (3, 1, 0.8)]
    assert [(m.index, m.true) for m in kept[1]] == [(1, 1), (7, 1)]

    class Loader:  # the whole test set, as the loaders of every process hold it
        files = [f"/data/val/{c}/{i}.png" for i, c in enumerate("ab" * 5)]

        def example(self, index):
            return torch.full((1, 2, 2), float(index))

    named = with_images(kept, Loader())
    assert named[0][0].image.flatten().tolist() == [9.0] * 4  # read back from the loader by its place in the set
    assert named[0][0].name == "b/9.png" and named[1][0].name == "b/1.png"


def test_the_gallery_of_many_classes_shows_those_of_lowest_accuracy():
    mistakes = [[Mistake(k, k, (k + 1) % 40, 0.9)] for k in range(40)]
    per_class = [{"class": str(k), "accuracy": 100.0 - k, "count": 10} for k in range(40)]
    shown, dropped = gallery_classes(mistakes, per_class)
    assert dropped == 40 - GALLERY_CLASSES
    assert [k for k, kept in enumerate(shown) if kept] == list(range(40 - GALLERY_CLASSES, 40))


def test_a_run_writes_its_report_with_the_gallery(trained_run):
    page = (trained_run.run_dir / REPORT).read_text()
    results = trained_run.results
    assert f'id="test-top1">{results["test_top1"]:.2f}%' in page
    assert page.count('class="mistake"') >= 5 * len(results["per_class"])  # 5-10 per class: a 3-epoch run errs
    assert "http://" not in page and "https://" not in page and "<script" not in page  # opens offline, as it is
    assert results["machine"] and results["recipe"] == "fashion-mnist-resnet14"


def _chromium() -> tuple[str, str]:
    """(browser, driver) from Debian's chromium and chromium-driver (`make test` installs them as root)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    if os.environ.get("CI"):
        pytest.fail("chromium and chromedriver are not installed but CI must test the report page: `make test` "
                    "installs Debian's chromium and chromium-driver as root")
    pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")


def open_in_chromium(page: Path, screenshot: Path) -> dict:
    """Open ``page`` from disk in headless Chromium; return what its DOM says (images and their natural widths, the
    numbers shown) and the browser console's messages, and save a full-page screenshot."""
    webdriver = require_module("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(page.resolve().as_uri())
        dom = driver.execute_script("""
            const imgs = [...document.images];
            return {
              images: imgs.map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth})),
              top1: document.getElementById('test-top1').textContent,
              top5: document.getElementById('test-top5').textContent,
              count: document.getElementById('test-count').textContent,
              perClass: Object.fromEntries([...document.querySelectorAll('td.accuracy')]
                                           .map(td => [td.dataset.class, td.textContent])),
              mistakes: document.querySelectorAll('figure.mistake').length,
              gradcam: document.querySelectorAll('figure.gradcam').length,
              height: document.documentElement.scrollHeight,
            };""")
        driver.set_window_size(1280, min(dom["height"], 16000))
        driver.save_screenshot(str(screenshot))
        dom["console"] = driver.get_log("browser")
    finally:
        driver.quit()
    return dom


def test_the_report_page_of_a_real_run_loads_in_chromium_and_shows_results_json(trained_run, tmp_path):
    require_module("captum")
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "report-page.png"
    dom = open_in_chromium(trained_run.run_dir / REPORT, shot)
    results = trained_run.results

    assert dom["images"] and all(i["complete"] and i["width"] > 0 for i in dom["images"]), dom["images"]
    assert dom["top1"] == f"{results['test_top1']:.2f}%" and dom["top5"] == f"{results['test_top5']:.2f}%"
    assert dom["count"] == f"{results['test_count']:,}"
    assert dom["perClass"] == {c["class"]: f"{c['accuracy']:.2f}%" for c in results["per_class"]}
    assert dom["mistakes"] >= 5 * len(results["per_class"]) and dom["gradcam"] > 0
    assert [m for m in dom["console"] if m["level"] in ("SEVERE", "WARNING")] == []
    assert shot.stat().st_size > 10_000


def test_resnet_report_writes_the_page_of_a_run_made_before_report_pages(trained_run, tmp_path):
    old = tmp_path / "old-run"
    shutil.copytree(trained_run.run_dir, old, ignore=shutil.ignore_patterns("checkpoints", REPORT))
    results = json.loads((old / "results.json").read_text())
    for key in ("machine", "recipe"):  # what a run of an earlier version did not record
        results.pop(key)
    (old / "results.json").write_text(json.dumps(results))

    done = run_cli("report", old)
    assert done.returncode == 0, done.stderr
    assert f"report page: {old / REPORT}" in done.stdout
    page = (old / REPORT).read_text()
    assert f'id="test-top1">{results["test_top1"]:.2f}%' in page and "not recorded" in page
    assert page.count('class="mistake"') >= 5 * len(results["per_class"])


def test_resnet_report_of_an_unfinished_run_or_a_missing_test_set_says_so(trained_run, tmp_path):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(trained_run.run_dir, unfinished, ignore=shutil.ignore_patterns("checkpoints", "results.json", REPORT))
    done = run_cli("report", unfinished)
    assert done.returncode == 2 and "has no results.json: the run has not finished" in done.stderr
    assert "Traceback" not in done.stderr and not (unfinished / REPORT).exists()

    # a page without its gallery, saying why, when the test set cannot be read
    page = write_report(trained_run.run_dir, None, gallery_note="No gallery: the test set could not be read (x).",
                        out=tmp_path / "no-gallery.html").read_text()
    assert "No gallery: the test set could not be read (x)." in page and 'class="mistake"' not in page

"""End-to-end tests of ``medai web`` in a real browser: Debian's chromium driven by Playwright.

The app is started on 127.0.0.1 (a free port) inside the test module and stopped at its end. The
page is used as a user would: pick a sample, run one method per module, read the results in the
page (segment list, evaluation numbers, registration quality), download the outputs, and save
screenshots (to ``Resources/Screenshots/web-*.png`` for the README with ``MEDAI_UPDATE_SCREENSHOTS=1``).

Needs ``playwright`` (PyPI, pinned) and the system ``chromium`` (``apt-get install chromium``);
the module is skipped when either is missing. Never runs ``playwright install``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from MedAICommonLib.resources import repositoryRoot

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="the system chromium is not installed (apt-get install chromium)"
)

SCREENSHOTS = repositoryRoot() / "Resources" / "Screenshots"
STARTUP_TIMEOUT_S = 300
VIEWPORT = {"width": 1280, "height": 900}


def _freePort() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def expectedWatershed():
    """The logic's own numbers, computed in a thread while the server starts (importing MONAI takes a while)."""
    with ThreadPoolExecutor(1) as executor:
        yield executor.submit(_expectedWatershed)


@pytest.fixture(scope="module")
def webUrl(expectedWatershed):
    """``medai web`` on 127.0.0.1, opening on the small 3D nuclei sample; stopped after the module."""
    port = _freePort()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"medai-web-test-{port}.log", "w+")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "medai", "web", "--port", str(port), "--sample", "NucleiImage3D"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"medai web exited with status {process.returncode}:\n{log.read()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"medai web did not answer within {STARTUP_TIMEOUT_S} s")
                time.sleep(0.5)
        yield url
    finally:
        # The server runs in its own session: stop it and anything it started, then wait for it.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)
        log.close()
    assert process.poll() is not None


@pytest.fixture(scope="module")
def page(webUrl):
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        browserPage = context.new_page()
        browserPage.set_default_timeout(300_000)  # generous: the CPU may be shared
        browserPage.goto(webUrl)
        browserPage.get_by_test_id("seg-volume").filter(has_text="NucleiImage3D").wait_for()
        yield browserPage
        browser.close()


def _choose(page, testId: str, option: str) -> None:
    """Pick ``option`` in the Vuetify select marked ``testId``."""
    page.get_by_test_id(testId).click()
    page.get_by_role("option", name=option, exact=True).click()


def _screenshot(page, name: str) -> Path:
    """Save the page as ``web-<name>.png``, in 256 colours to keep the file small.

    Into ``Resources/Screenshots`` (the README's pictures) only with ``MEDAI_UPDATE_SCREENSHOTS=1``, so
    that a test run leaves the checkout as it was; otherwise into the temporary folder.
    """
    from PIL import Image

    folder = SCREENSHOTS if os.environ.get("MEDAI_UPDATE_SCREENSHOTS") == "1" else Path(tempfile.gettempdir())
    path = folder / f"web-{name}.png"
    time.sleep(2.0)  # the views stream their last frame after the page changed
    page.screenshot(path=str(path))
    with Image.open(path) as image:
        image.convert("RGB").quantize(256).save(path, optimize=True)
    assert path.stat().st_size > 10_000
    return path


def test_bad_upload_is_refused_in_the_page(page, tmp_path):
    bad = tmp_path / "notes.nrrd"
    bad.write_text("this is not an image\n")
    page.get_by_test_id("seg-upload").locator("input[type=file]").set_input_files(str(bad))
    error = page.get_by_test_id("seg-error")
    error.filter(has_text="not a readable image").wait_for()
    assert "NucleiImage3D" in page.get_by_test_id("seg-volume").inner_text()


def _expectedWatershed() -> tuple[int, float, float]:
    """Object count, instance F1 and Dice of the default watershed of NucleiImage3D, by the logic itself."""
    from MedAICommonLib.sampledata import loadSampleData
    from MedAICommonLib.sceneio import createScene
    from MedAISegmentationLib.logic import MedAISegmentationLogic

    scene = createScene()
    image, reference = loadSampleData(scene, "NucleiImage3D"), loadSampleData(scene, "NucleiMask3D")
    logic = MedAISegmentationLogic()
    result = logic.runWatershed(image, createTable=False)
    report = logic.evaluateSegmentation(reference, result.outputNode, instanceLevel=True, createTables=False).report()
    return result.objectCount, report["instances"]["f1"], report["segments"][0]["dice"]


def test_watershed_evaluation_and_download(page, expectedWatershed, tmp_path):
    expectedObjects, expectedF1, expectedDice = expectedWatershed.result()
    page.get_by_test_id("seg-run").click()
    count = page.get_by_test_id("seg-count")
    count.wait_for()
    objects = int(re.search(r"(\d+) segments", count.inner_text()).group(1))
    message = page.get_by_test_id("seg-message").inner_text()
    assert f"Watershed: {objects} objects" in message
    assert objects == expectedObjects
    assert page.get_by_test_id("seg-segment").count() == objects
    assert page.get_by_test_id("seg-segment").first.inner_text().strip() == "Object 1"

    _choose(page, "seg-reference", "NucleiMask3D")
    page.get_by_test_id("seg-evaluate").click()
    instances = page.get_by_test_id("seg-instances")
    instances.wait_for()
    f1 = float(re.search(r"F1 ([0-9.]+)", instances.inner_text()).group(1))
    assert f1 == pytest.approx(expectedF1, abs=5e-4)
    table = page.get_by_test_id("seg-table")
    table.scroll_into_view_if_needed()
    dice = table.locator("tbody tr td").nth(1).inner_text()
    assert float(dice) == pytest.approx(expectedDice, abs=5e-4)
    _screenshot(page, "segmentation")

    with page.expect_download() as download:
        page.get_by_test_id("seg-download").click()
    saved = tmp_path / "result.seg.nrrd"
    download.value.save_as(saved)
    assert saved.read_bytes().startswith(b"NRRD")


def test_registration_live_curve_quality_and_transform(page, tmp_path):
    page.get_by_test_id("tab-registration").click()
    _choose(page, "reg-transform", "translation")
    page.get_by_test_id("reg-load").click()
    page.get_by_test_id("reg-pair").filter(has_text="BrainProtonDensitySliceShifted13x17y").wait_for()
    page.get_by_test_id("reg-run").click()
    quality = page.get_by_test_id("reg-quality")
    quality.wait_for()
    assert "Registered in" in page.get_by_test_id("reg-message").inner_text()
    assert not page.get_by_test_id("reg-progress").is_visible()
    points = int(page.get_by_test_id("reg-curve").locator("svg").get_attribute("data-points"))
    assert points >= 5
    rows = dict(
        (cells[0], cells[1]) for cells in (row.locator("td").all_inner_texts() for row in quality.locator("tr").all())
    )
    assert float(rows["Jacobian min"]) == pytest.approx(1.0, abs=1e-3)  # a translation neither shrinks nor grows
    assert rows["Folding"] == "0.000%"
    _screenshot(page, "registration")

    with page.expect_download() as download:
        page.get_by_test_id("reg-download").click()
    saved = tmp_path / "transform.h5"
    download.value.save_as(saved)
    assert saved.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"


def _loadSample(page, name: str, shownAs: str) -> None:
    """Load the sample ``name`` in the Segmentation tab and wait until its volume line shows ``shownAs``."""
    page.get_by_test_id("tab-segmentation").click()
    _choose(page, "seg-sample", name)
    page.get_by_test_id("seg-load").click()
    page.get_by_test_id("seg-volume").filter(has_text=shownAs).wait_for()


def test_sample_volume_in_the_four_views(page):
    _loadSample(page, "KmeansT1", "KmeansT1: 128 x 128 x 62 voxels")
    assert page.get_by_test_id("seg-message").inner_text() == "Loaded sample KmeansT1."
    assert page.get_by_test_id("seg-count").count() == 0  # the previous result went with its volume
    _screenshot(page, "views")


def test_uncertainty_tab(page):
    page.get_by_test_id("tab-uncertainty").click()
    runButton = page.get_by_test_id("unc-run")
    page.locator("[data-testid=unc-run], [data-testid=unc-unavailable]").first.wait_for()
    assert runButton.is_visible(), page.get_by_test_id("unc-unavailable").inner_text()  # the shipped networks
    _loadSample(page, "NucleiImage2D", "NucleiImage2D")
    page.get_by_test_id("tab-uncertainty").click()
    _choose(page, "unc-model", "NucleiFluorescence2D")
    runButton.click()
    # Either the map and its colour range, or a sentence saying why not (e.g. weights not shipped yet).
    # ":visible": the error alert is always in the page (hidden while empty) and comes first, so a plain
    # ".first" would wait for it forever even after the range had appeared.
    page.locator("[data-testid=unc-error]:visible, [data-testid=unc-range]").first.wait_for(timeout=180_000)
    assert not page.get_by_test_id("unc-error").is_visible(), page.get_by_test_id("unc-error").inner_text()
    assert "entropy" in page.get_by_test_id("unc-range").inner_text()
    assert "0 (black) to" in page.get_by_test_id("unc-range").inner_text()  # the window the logic gave the map
    _screenshot(page, "uncertainty")


def test_uncertainty_calibration_against_a_reference(page):
    """MC dropout of the brain network on Colin27 with Colin27BrainMask as reference: the reliability
    diagram and the calibration numbers appear in the page (issue 9: "the calibration plot")."""
    _loadSample(page, "Colin27", "Colin27:")
    page.get_by_test_id("tab-uncertainty").click()
    _choose(page, "unc-model", "BrainExtractionT1")
    _choose(page, "unc-method", "Monte Carlo dropout")
    page.get_by_test_id("unc-reference").click()
    page.get_by_role("option", name="Colin27BrainMask", exact=True).click()
    page.get_by_test_id("unc-run").click()
    page.locator("[data-testid=unc-error]:visible, [data-testid=unc-calibration]").first.wait_for(timeout=180_000)
    assert not page.get_by_test_id("unc-error").is_visible(), page.get_by_test_id("unc-error").inner_text()
    chart = page.get_by_test_id("unc-calibration")
    assert chart.get_attribute("src").startswith("data:image/png;base64,")
    assert chart.evaluate("image => image.naturalWidth") > 200  # a real picture, decoded by the browser
    summary = page.locator("tbody").last.inner_text()
    ece = float(summary.split("ece")[1].split()[0])
    assert 0.0 <= ece < 0.1, summary  # the shipped brain network is well calibrated on Colin27 (demo: 0.009)
    _screenshot(page, "uncertainty-calibration")

"""The report in a real browser: headless Chromium shows the verdict, a confusion matrix, a
curve and the thumbnails of what changed, runs no script a class name smuggles in, and
takes a screenshot. Skips with a reason where Chromium, its driver or Selenium is missing
(``.ci/run`` installs Debian's ``chromium`` and ``chromium-driver``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pytest_modelgate.options import OPTION_ENABLE, OPTION_UPDATE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

GATE = """
from pytest_modelgate import assert_accuracy_above, assert_recall_above
from pytest_modelgate.data import from_arrays
from conftest import GRAY

EPOCHS, LR = {epochs}, {lr}

def test_gate(finetune, digits, tiny):
    # A class name is user data: this one must render as text, never run.
    data = from_arrays(digits.train.images, digits.train.labels, digits.test.images,
                       digits.test.labels,
                       class_names=["zero", "<script>alert(1)</script>", "seven"])
    run = finetune(tiny, data, epochs=EPOCHS, freeze="none", lr=LR, device="cpu", **GRAY)
    assert_accuracy_above(run, 0.0)
    assert_recall_above(run, 0.0, label="seven")
"""


def make_report(project) -> Path:
    """A real session: a good model makes the baseline, a much worse one regresses."""
    project.makepyfile(test_gate=GATE.format(epochs=3, lr=1e-2))
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=1)
    project.makepyfile(test_gate=GATE.format(epochs=2, lr=1e-4))
    project.runpytest(OPTION_ENABLE).assert_outcomes(failed=1)
    return project.path / "reports" / "modelgate.html"


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("no Chromium: install Debian's chromium and chromium-driver "
                    "(.ci/run does) to test the report in a browser")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    # The driver on disk: Selenium Manager would try to download one, and nothing here can.
    service = webdriver.ChromeService(executable_path=DRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def visible(element) -> bool:
    size = element.size
    return element.is_displayed() and size["width"] > 0 and size["height"] > 0


def test_report_in_chromium(project, browser, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    html = make_report(project)
    browser.get(html.as_uri())

    verdict = browser.find_element(By.ID, "verdict")
    assert visible(verdict)
    assert "1 regressed" in verdict.text and "test_gate.py::test_gate" in verdict.text

    matrix = browser.find_element(By.CSS_SELECTOR, "table.cm")
    assert visible(matrix) and "Confusion matrix" in matrix.text
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert charts and visible(charts[0])
    curves = browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline.series")
    assert any(visible(c) for c in curves)
    thumbs = browser.find_elements(By.CSS_SELECTOR, ".thumbs img")
    assert thumbs and visible(thumbs[0])
    assert browser.execute_script("return arguments[0].naturalWidth", thumbs[0]) > 0

    # The class name shows as text and no script ran.
    assert "<script>alert(1)</script>" in browser.find_element(By.TAG_NAME, "body").text
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text

    shot = Path(os.environ.get("MODELGATE_SCREENSHOT", tmp_path / "report.png"))
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

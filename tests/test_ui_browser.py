"""A real browser on `keras-relu ui`: headless Debian Chromium driven by Selenium.

A small search writes a fresh store (./mlruns in a tmp folder); `keras-relu ui` serves it
on a free port; Chromium opens the experiment's runs, expands the search's parent run
to see its trials, then a trial's page with the dead-neuron metrics and its artifacts.
Screenshots stay in the pytest tmp folder; their paths are printed.

Needs /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium
chromium-driver); nothing is downloaded at run time. Without them the test fails
when CI=true and is skipped (visibly, with the reason) otherwise.
"""

import os
import pathlib
import select
import socket
import subprocess
import sys
import time

import keras
import pytest
from mlflow import MlflowClient

from search.cli import main
from search.tracking import default_tracking_uri

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000")
WAIT = 90  # seconds for the server and for each page (2 busy cores)


def _require_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = (f"browser test needs {', '.join(missing)} "
                  "(apt-get install -y chromium chromium-driver; pip install selenium)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_ui(folder, port):
    """`keras-relu ui` as a subprocess; returns (process, URL) once it prints the URL."""
    log = open(folder / "ui.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "ui", "--port", str(port)],
                            cwd=folder, stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.monotonic() + WAIT + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 1)[0]:
            line = proc.stdout.readline()
            if line.startswith("MLflow UI: "):
                return proc, line.split()[2]
    proc.terminate()
    raise AssertionError(f"keras-relu ui did not start: {(folder / 'ui.log').read_text()[-2000:]}")


def _chromium(profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the browser test runs once, on the tensorflow pass (the UI does "
                           "not depend on the backend; a search on each is tested elsewhere)")
def test_mlflow_ui_shows_the_search_runs_in_chromium(tmp_path, monkeypatch, capsys):
    _require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["search", "--trials", "2", "--epochs", "1", "--study-name", "browser",
                 "--fix", "depth=2", "--fix", "batch_norm=false"]) == 0
    client = MlflowClient(default_tracking_uri(tmp_path))
    experiment = client.get_experiment_by_name("browser")
    runs = client.search_runs([experiment.experiment_id])
    child = next(r for r in runs if r.info.run_name == "trial-0")

    proc, url = _start_ui(tmp_path, _free_port())
    driver = _chromium(tmp_path / "chromium-profile")
    shots = []
    try:
        def page_shows(*texts):
            WebDriverWait(driver, WAIT).until(
                lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in texts),
                message=f"{texts} not all on {driver.current_url}")

        def screenshot(name):
            time.sleep(0.5)  # let the last rows paint
            path = tmp_path / name
            assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
            shots.append(path)

        # The experiment's runs: the search's parent run, expanded to show its trials.
        driver.get(f"{url}/#/experiments/{experiment.experiment_id}/runs")
        page_shows("search-")
        for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label=Close]"):
            button.click()  # the assistant side panel, if any
        parent_row = driver.find_element(
            By.XPATH, "//div[@role='row'][.//*[starts-with(text(), 'search-')]]")
        parent_row.find_element(By.XPATH, ".//button").click()  # expand the child runs
        page_shows("trial-0", "trial-1")
        screenshot("mlflow_runs.png")

        # A trial's page (by URL, sturdier than clicking): name, parent, dead-neuron metrics.
        driver.get(f"{url}/#/experiments/{experiment.experiment_id}/runs/{child.info.run_id}")
        page_shows("trial-0", "search-", "dead_fraction", "dormant_fraction")
        metrics = driver.find_elements(By.XPATH, "//*[starts-with(text(), 'Metrics (')]")
        if metrics:
            driver.execute_script("arguments[0].scrollIntoView()", metrics[0])
        screenshot("mlflow_trial.png")

        # Its artifacts: the dead-fraction-per-layer plot.
        driver.get(f"{url}/#/experiments/{experiment.experiment_id}/runs/"
                   f"{child.info.run_id}/artifacts")
        page_shows("dead_fraction.png")
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=30)
        with capsys.disabled():
            for path in shots:
                print(f"\nscreenshot: {path}")
    assert proc.returncode in (0, 130), (tmp_path / "ui.log").read_text()[-2000:]
    assert not pathlib.Path(tmp_path, "mlartifacts").exists()  # the store's own artifacts

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
import time

import keras
import pytest
from browser import CHROMEDRIVER, CHROMIUM, chromium, free_port, show_child_runs, start_ui, \
    wait_for_text
from mlflow import MlflowClient

from search.cli import main
from search.tracking import default_tracking_uri


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


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the browser test runs once, on the tensorflow pass (the UI does "
                           "not depend on the backend; a search on each is tested elsewhere)")
def test_mlflow_ui_shows_the_search_runs_in_chromium(tmp_path, monkeypatch, capsys):
    _require_browser()
    from selenium.webdriver.common.by import By

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["search", "--trials", "2", "--epochs", "1", "--study-name", "browser",
                 "--fix", "depth=2", "--fix", "batch_norm=false"]) == 0
    client = MlflowClient(default_tracking_uri(tmp_path))
    experiment = client.get_experiment_by_name("browser")
    runs = client.search_runs([experiment.experiment_id])
    child = next(r for r in runs if r.info.run_name == "trial-0")

    proc, url = start_ui(tmp_path, free_port())
    driver = chromium(tmp_path / "chromium-profile")
    shots = []
    try:
        def page_shows(*texts):
            wait_for_text(driver, texts)

        def screenshot(name):
            time.sleep(0.5)  # let the last rows paint
            path = tmp_path / name
            assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
            shots.append(path)

        # The experiment's runs: the search's parent run, expanded to show its trials.
        show_child_runs(driver, f"{url}/#/experiments/{experiment.experiment_id}/runs")
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

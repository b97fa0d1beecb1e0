"""Headless Debian Chromium on `keras-relu ui`: what the browser test and the
documentation's screenshot (docs/make_figures.py) share. Nothing is downloaded: the
browser and its driver are /usr/bin/chromium and /usr/bin/chromedriver."""

import select
import socket
import subprocess
import sys
import time

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000")
WAIT = 90  # seconds for the server and for each page (2 busy cores)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ui(folder, port, env=None):
    """`keras-relu ui` in `folder` as a subprocess; (process, URL) once it prints the URL."""
    log = open(folder / "ui.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "ui", "--port", str(port)],
                            cwd=folder, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    deadline = time.monotonic() + WAIT + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 1)[0]:
            line = proc.stdout.readline()
            if line.startswith("MLflow UI: "):
                return proc, line.split()[2]
    proc.terminate()
    raise AssertionError(f"keras-relu ui did not start: {(folder / 'ui.log').read_text()[-2000:]}")


def chromium(profile, window="1400,1000"):
    """A Selenium driver on headless Chromium with a fresh profile folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS[:-1], f"--window-size={window}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def show_child_runs(driver, experiment_url, wait=WAIT):
    """Opens an experiment's runs and expands the search's parent run to its trials."""
    from selenium.webdriver.common.by import By

    driver.get(experiment_url)
    wait_for_text(driver, ("search-",), wait)
    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label=Close]"):
        button.click()  # the assistant side panel, if any
    parent_row = driver.find_element(
        By.XPATH, "//div[@role='row'][.//*[starts-with(text(), 'search-')]]")
    parent_row.find_element(By.XPATH, ".//button").click()


def wait_for_text(driver, texts, wait=WAIT):
    """Waits until the page's body shows every one of `texts`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, wait).until(
        lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in texts),
        message=f"{texts} not all on {driver.current_url}")

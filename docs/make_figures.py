"""The documentation's pictures, from a real small run (nothing here is drawn by hand).

    python docs/make_figures.py [--out docs/images] [--only plots|screenshots]

- `dead_fraction.png`: `keras_relu.plot_neuron_history` of a deep, narrow ReLU MLP on
  digits (8 x Dense(16), He normal, Adam at 1e-2, 15 epochs), where units die;
- `unit_activity.png`: `keras_relu.plot_unit_activity` of the same model trained with
  `ReDo` recycling every 3 epochs (dead units crossed, recycles marked);
- `mlflow_runs.png`, `mlflow_trial.png`, `mlflow_charts.png`: the MLflow UI (`keras-relu
  ui`) over a 4-trial, 3-epoch search on digits, shot with headless Debian Chromium
  (/usr/bin/chromium and /usr/bin/chromedriver, driven by Selenium): the search's parent
  run with its trials, a trial's page with its dead-neuron metrics, and its metric charts
  (the dead fraction of each layer over epochs).

TensorFlow unless KERAS_BACKEND says otherwise; about 2-3 minutes on 2 cores. Screenshots
are stored with a 256-colour palette, to keep them small.
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def plots(out):
    import keras
    from sklearn.datasets import load_digits

    import keras_relu

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")

    def fit(callbacks):
        keras.utils.clear_session()  # layer names from dense, dense_1, ... again
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,))])
        for _ in range(8):
            model.add(keras.layers.Dense(16, activation="relu", kernel_initializer="he_normal"))
        model.add(keras.layers.Dense(10, activation="softmax"))
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=15, batch_size=64, verbose=0, callbacks=callbacks)

    monitor = keras_relu.DeadNeuronMonitor(probe=x, per_layer=True)
    fit([monitor])
    keras_relu.plot_neuron_history(monitor, out / "dead_fraction.png",
                                   title="Dead units per layer: 8 x Dense(16), ReLU, digits")
    monitor, redo = keras_relu.DeadNeuronMonitor(probe=x), keras_relu.ReDo(probe=x, every=3)
    fit([monitor, redo])
    keras_relu.plot_unit_activity(monitor, out / "unit_activity.png", redo=redo,
                                  title="Unit activity with ReDo every 3 epochs")
    print(f"dead fraction at the end: {monitor.last.dead_fraction:.3f} with ReDo")


def _small_png(path):
    """Rewrites a screenshot with a 256-colour palette."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)


def screenshots(out):
    from browser import chromium, free_port, show_child_runs, start_ui, wait_for_text
    from mlflow import MlflowClient

    folder = pathlib.Path(tempfile.mkdtemp(prefix="keras-relu-figures-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MLFLOW_TRACKING_URI", None)
    subprocess.run([sys.executable, "-m", "search.cli", "search", "--trials", "4", "--epochs",
                    "3", "--study-name", "digits"], cwd=folder, env=env, check=True)
    client = MlflowClient(f"sqlite:///{folder}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("digits")
    trial = next(r for r in client.search_runs([experiment.experiment_id])
                 if r.info.run_name == "trial-1")
    proc, url = start_ui(folder, free_port(), env=env)
    driver = chromium(folder / "chromium-profile", window="1280,860")
    try:
        runs = f"{url}/#/experiments/{experiment.experiment_id}/runs"
        show_child_runs(driver, runs)
        wait_for_text(driver, ("trial-0", "trial-3"))
        time.sleep(1)  # let the last rows paint
        driver.save_screenshot(str(out / "mlflow_runs.png"))
        driver.get(f"{runs}/{trial.info.run_id}")
        wait_for_text(driver, ("trial-1", "dead_fraction", "dormant_fraction"))
        time.sleep(1)
        driver.save_screenshot(str(out / "mlflow_trial.png"))
        driver.get(f"{runs}/{trial.info.run_id}/model-metrics")
        wait_for_text(driver, ("dead_fraction", "activation_0"))
        time.sleep(3)  # the charts draw after the text
        driver.save_screenshot(str(out / "mlflow_charts.png"))
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=30)
    for name in ("mlflow_runs.png", "mlflow_trial.png", "mlflow_charts.png"):
        _small_png(out / name)
    shutil.rmtree(folder, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--only", choices=("plots", "screenshots"))
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only != "screenshots":
        plots(out)
    if args.only != "plots":
        screenshots(out)
    for path in sorted(out.glob("*.png")):
        print(f"{path}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()

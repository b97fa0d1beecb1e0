"""The search on models and data as users have them: plain factories (a keras.applications
network among them), a trained .keras file, PyDataset / tf.data / DataLoader pipelines and a
folder of images; each search read back through MLflow's client and `keras-relu best`."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import BACKEND, ROOT, mlflow_runs, one_pass, worker_env

import search
import streamed_data
from search.cli import main
from search.tracking import default_tracking_uri

FLAGS = ["--trials", "2", "--epochs", "1", "--no-controls"]
HELPERS = os.path.join(ROOT, "tests", "streamed_data.py")


def check_runs(workdir, study, trials=2, swapped=None):
    """The study's child runs: metrics with dead fractions per layer and, for a finished
    model, the swap report; then `keras-relu best` exports a model that loads."""
    client, parents, children = mlflow_runs(default_tracking_uri(workdir), study)
    assert len(children) == trials, [r.data.tags for r in children]
    for run in children:
        metrics = run.data.metrics
        assert "val_accuracy" in metrics and "dead_fraction" in metrics, sorted(metrics)
        assert any(k.startswith("dead_fraction/") for k in metrics), sorted(metrics)
        if swapped is not None:
            path = client.download_artifacts(run.info.run_id, "swap_report.json", str(workdir))
            report = json.loads(open(path).read())
            assert len(report["replaced"]) == swapped == int(run.data.tags["swap_replaced"])
            assert report["activation"] == run.data.params["activation"]
    assert main(["best", "--study-name", study, "--output", str(workdir / "best")]) == 0
    exported = keras.saving.load_model(workdir / "best" / f"{study}.keras", safe_mode=True)
    return children, exported


def test_pydataset_and_a_plain_factory(workdir):
    assert main(["search", "--data", f"{HELPERS}:pydatasets", "--model", f"{HELPERS}:mlp",
                 "--study-name", "pydataset", *FLAGS]) == 0
    _, exported = check_runs(workdir, "pydataset", swapped=2)
    assert exported.predict(streamed_data.X[:3], verbose=0).shape == (3, 10)


@one_pass("torch")
def test_a_streamed_factory_winner_retrains_and_is_checked_over_seeds(workdir, capsys):
    assert main(["search", "--data", f"{HELPERS}:pydatasets", "--model", f"{HELPERS}:mlp",
                 "--study-name", "again", *FLAGS]) == 0
    capsys.readouterr()
    assert main(["retrain", "mlruns/best/again.yaml"]) == 0
    assert "(the same)" in capsys.readouterr().out.splitlines()[-1]
    assert main(["compare", "--study", "again", "--top", "1", "--seeds", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("relu-baseline") for line in lines)
    assert "over fresh seeds" in lines[-1]


@one_pass("torch")
def test_kerastuner_and_a_resume_on_a_factory_without_test_data(workdir, capsys):
    """Both engines take a finished model; the same command resumes; without test data
    the report says there is no held-out score rather than inventing one."""
    for engine, runs in (("optuna", 2), ("optuna", 4), ("kerastuner", 2)):
        result = search.run(data=lambda: streamed_data.Digits("train"),
                            validation_data=lambda: streamed_data.Digits("val"),
                            model=streamed_data.mlp, engine=engine, study_name=engine,
                            trials=2, epochs=1, controls=False, progress=False)
        assert result.total_trials == runs and result.test_scores == {}
        assert "(no held-out score: no test data given)" in result.report()
    check_runs(workdir, "optuna", trials=4, swapped=2)


def test_tf_data_pipelines_from_python_and_a_trained_keras_file(workdir):
    """Trial 0 starts from the file's weights: its scores before training are the file's."""
    model = streamed_data.mlp((64,), 10)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(streamed_data.X[:1000], streamed_data.Y[:1000], epochs=3, verbose=0)
    model.save(workdir / "trained.keras")
    train, val, test = streamed_data.tf_pipelines()
    own = model.evaluate(val, verbose=0, return_dict=True)
    result = search.run(data=train, validation_data=val, test_data=test,
                        model=str(workdir / "trained.keras"), study_name="tfdata",
                        trials=2, epochs=1, controls=False, progress=False)
    assert "initializer" not in result.best[0].config  # the file's weights are the start
    children, exported = check_runs(workdir, "tfdata", swapped=2)
    first = next(r for r in children if r.data.tags["trial_number"] == "0")
    assert first.data.metrics["initial_val_accuracy"] == pytest.approx(own["accuracy"], abs=1e-6)
    assert first.data.metrics["initial_val_loss"] == pytest.approx(own["loss"], rel=1e-5)
    assert "accuracy" in result.test_scores
    assert isinstance(exported.get_layer("hidden_relu"), keras.layers.Layer)


@pytest.mark.skipif(BACKEND != "torch", reason="a torch DataLoader: the torch pass")
def test_torch_dataloaders(workdir):
    train, val, test = streamed_data.loaders()
    result = search.run(data=train, validation_data=val, test_data=test, study_name="loader",
                        trials=2, epochs=1, controls=False, progress=False,
                        fix=["depth=2", "width=16"])
    check_runs(workdir, "loader")
    assert result.trials[0].config["depth"] == 2


# Building and compiling MobileNetV3 three times (the start-up check, two trials) takes JAX
# over three minutes here; on JAX the folder feeds a small CNN (the swap itself is tested on
# keras.applications networks on JAX in test_swap.py).
APPLICATION = ("mobilenet", 14) if BACKEND != "jax" else ("cnn", 2)


def test_an_image_folder_and_a_keras_applications_factory(workdir):
    streamed_data.write_pngs(str(workdir / "images"))
    factory, sites = APPLICATION
    assert main(["search", "--dataset", "images:images", "--model", f"{HELPERS}:{factory}",
                 "--study-name", "images", "--batch-size", "16", *FLAGS]) == 0
    _, exported = check_runs(workdir, "images", swapped=sites)
    assert exported.input_shape == (None, 32, 32, 3) and exported.output_shape == (None, 3)


@one_pass("tensorflow")
def test_two_workers_import_the_data_function_and_the_factory(workdir):
    proc = subprocess.run([sys.executable, "-m", "search.cli", "search", "--data",
                           f"{HELPERS}:pydatasets", "--model", f"{HELPERS}:mlp", "--workers",
                           "2", "--trials", "3", "--epochs", "1", "--no-controls"],
                          cwd=workdir, env=worker_env(), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    children, _ = check_runs(workdir, "data-pydatasets", trials=3, swapped=2)
    assert len({r.data.tags["worker"] for r in children}) == 2


def _generator():
    yield streamed_data.X[:64], streamed_data.Y[:64]


BAD_FILES = {
    "raises.py": "def load():\n    raise OSError('no such bucket')\n",
    "other.py": "def load():\n    return 42\n",
    "compiled.py": ("import keras\ndef make(shape, classes):\n    m = keras.Sequential(["
                    "keras.Input(shape), keras.layers.Dense(classes)])\n    m.compile('adam', "
                    "'mse')\n    return m\n"),
    "subclassed.py": ("import keras\nclass M(keras.Model):\n    def __init__(self):\n"
                      "        super().__init__()\n        self.d = keras.layers.Dense(10)\n"
                      "    def call(self, x):\n        return self.d(x)\n"
                      "def make(shape, classes):\n    return M()\n"),
}


@pytest.mark.parametrize("flags, words", [
    (["--data", "raises.py:load"], "the function raised OSError: no such bucket"),
    (["--data", "other.py:load"], "must return (train, validation) or (train, validation, test)"),
    (["--dataset", "images:flat"], "no class sub-folders"),
    (["--model", "narrow.keras"], "the model does not take the data"),
    (["--model", "compiled.py:make"], "returned a compiled model"),
    (["--model", "subclassed.py:make"], "cannot read the graph"),
])
def test_bad_input_is_one_line_before_anything_is_created(workdir, capsys, flags, words):
    for name, text in BAD_FILES.items():
        (workdir / name).write_text(text)
    (workdir / "flat").mkdir()
    keras.utils.save_img(str(workdir / "flat" / "a.png"), np.zeros((8, 8, 3)))
    streamed_data.mlp((10,), 10).save(workdir / "narrow.keras")
    assert main(["search", *flags, "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not (workdir / "mlruns").exists()


@pytest.mark.parametrize("kwargs, words", [
    ({"data": _generator()}, "a generator is read once"),
    ({"data": streamed_data.Digits("train")}, "needs validation data"),
    ({"data": streamed_data.Digits("train"), "validation_data": (streamed_data.X, streamed_data.Y)},
     "arrays next to pipelines"),
])
def test_bad_pipelines_from_python_raise_usage_errors_first(workdir, kwargs, words):
    with pytest.raises(search.UsageError, match=words.replace("(", r"\(")):
        search.run(trials=1, progress=False, **kwargs)
    assert not (workdir / "mlruns").exists()

"""The user's own model: a builder file, its own dimension, both engines and workers; the
winner (logged model, best.yaml, held-out score, `keras-relu best`); bad builders."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import BACKEND, mlflow_runs, search_logic
from mlflow import MlflowClient
from sklearn.datasets import load_digits

import search
from search.cli import main
from search.tracking import default_tracking_uri

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = textwrap.dedent('''
    import keras
    from keras import layers


    @keras.saving.register_keras_serializable(package="user_model")
    class Scale(layers.Layer):
        """A layer Keras does not have: the model must be saved and loaded with it."""

        def __init__(self, factor=1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}


    def build(cures, input_shape, num_classes):
        inputs = keras.Input(input_shape)
        x = Scale(0.5)(inputs)
        x = cures.dense(cures.config["units"])(x)
        x = cures.dense(cures.config["units"])(x)
        return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))
''')
SPACE = "units: {low: 8, high: 32}\nbatch_norm: false\nlearning_rate: {low: 0.001, high: 0.01}\n"


@pytest.fixture
def user_model(workdir):
    (workdir / "my_model.py").write_text(MODEL)
    (workdir / "space.yaml").write_text(SPACE)
    return [f"--model={workdir / 'my_model.py'}:build", "--space=space.yaml"]


def _check_children(uri, study, count):
    client, parents, children = mlflow_runs(uri, study)
    assert len(children) == count, [r.data.tags for r in children]
    for run in children:
        assert 8 <= int(run.data.params["units"]) <= 32
        assert {"dead_fraction/activation_0", "dead_fraction/activation_1"} <= set(
            run.data.metrics), sorted(run.data.metrics)
        assert "depth" not in run.data.params  # the built-in model's dimensions are not searched
    return client, parents


@search_logic("torch")
def test_a_user_model_file_on_both_engines(user_model, workdir, capsys):
    uri = default_tracking_uri(workdir)
    assert main(["search", *user_model, "--trials", "3", "--epochs", "2", "--study-name", "o"]) == 0
    _check_children(uri, "o", 3)
    assert main(["search", *user_model, "--engine", "kerastuner", "--trials", "3",
                 "--epochs", "2", "--study-name", "k"]) == 0
    _, parents = _check_children(uri, "k", 3)
    assert parents[0].data.tags["best_model_uri"].startswith("models:/")
    out = capsys.readouterr().out
    assert "units" in out.split("Best trials:")[-1].splitlines()[1]  # the table shows it


@pytest.mark.skipif(BACKEND != "jax", reason="multi-process scenario: runs on the jax pass")
def test_a_user_model_file_in_two_workers(user_model, workdir):
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=ROOT)
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-m", "search.cli", "search", *user_model,
                           "--workers", "2", "--trials", "3", "--epochs", "2"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_children(default_tracking_uri(workdir), "digits", 3)


def test_the_winner_from_python(workdir):
    sys.path.insert(0, str(workdir))
    (workdir / "digits_model.py").write_text(MODEL)
    from digits_model import build

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    test = (x[1500:], y[1500:])
    result = search.run(model=build, data=(x[:1500], y[:1500]), test_data=test,
                        space={"units": [16, 24], "batch_norm": False}, trials=3, epochs=3,
                        study_name="win", progress=False)
    model = result.best_model()
    assert model.predict(test[0][:5], verbose=0).shape == (5, 10)
    accuracy = model.evaluate(*test, verbose=0, return_dict=True)["accuracy"]
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert accuracy == pytest.approx(parent.data.metrics["best_test_accuracy"], abs=1e-6)
    assert result.test_scores["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert parent.data.tags["best_model_run_id"] == result.best[0].run_id

    # The .keras file loads with safe_mode=True on another backend, with the same outputs.
    path = workdir / "win.keras"
    model.save(path)
    np.save(workdir / "x.npy", test[0][:5])
    np.save(workdir / "want.npy", model.predict(test[0][:5], verbose=0))
    other = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[BACKEND]
    code = ("import numpy as np, keras, keras_relu, digits_model\n"
            "m = keras.saving.load_model('win.keras', safe_mode=True)\n"
            "got = m.predict(np.load('x.npy'), verbose=0)\n"
            "print(float(np.abs(got - np.load('want.npy')).max()))")
    env = dict(os.environ, KERAS_BACKEND=other, PYTHONPATH=os.pathsep.join([ROOT, str(workdir)]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5


@search_logic("torch")
def test_keras_relu_best_exports_registers_and_best_yaml_retrains_it(workdir, capsys):
    assert main(["search", "--trials", "3", "--epochs", "1", "--fix", "depth=1",
                 "--fix", "width=16"]) == 0
    capsys.readouterr()
    assert main(["best", "--output", "out", "--register-model", "digits-best"]) == 0
    out, err = capsys.readouterr()
    assert "best_test_accuracy" in out and "models:/" in out
    assert 'load it: import keras, keras_relu; model = keras.saving.load_model("out/digits.keras")' \
        in out  # without keras_relu, Keras says only "could not be deserialized"
    assert "retrain it: keras-relu retrain out/digits.best.yaml" in out
    assert "Downloading artifacts" not in err  # MLflow's progress bar
    assert (workdir / "out" / "digits.keras").stat().st_size > 0
    client = MlflowClient(default_tracking_uri(workdir))
    versions = client.search_model_versions("name = 'digits-best'")
    assert [int(v.version) for v in versions] == [1]
    _, parents, _ = mlflow_runs(default_tracking_uri(workdir), "digits")
    best = {k[5:]: v for k, v in parents[0].data.params.items() if k.startswith("best.")}

    assert main(["search", "--space", "out/digits.best.yaml", "--trials", "2", "--epochs", "1",
                 "--study-name", "again"]) == 0
    _, _, children = mlflow_runs(default_tracking_uri(workdir), "again")
    for run in children:
        assert {k: run.data.params[k] for k in best} == best


@pytest.mark.parametrize("builder, flags, words", [
    (None, ["--model", "no_such_module:build"], "cannot import no_such_module"),
    ("def build(c, s, n): pass", ["--model", "{file}:nope"], "has no function 'nope'"),
    ("def build(c, s, n):\n    raise RuntimeError('boom')", [], "builder raised RuntimeError: boom"),
    ("def build(c, s, n):\n    return 3", [], "returned int, not a keras.Model"),
    ("import keras\ndef build(c, s, n):\n    m = keras.Sequential([keras.Input(s), "
     "keras.layers.Dense(n)])\n    m.compile('adam', 'mse')\n    return m", [],
     "returned a compiled model"),
    ("import keras\ndef build(c, s, n):\n    return keras.Sequential([keras.Input((3,)), "
     "*c.dense(4).layers, keras.layers.Dense(n)])", [], "does not take the data (inputs (64,)"),
    ("import keras\ndef build(c, s, n):\n    return keras.Sequential([keras.Input(s), "
     "keras.layers.Dense(n, activation='softmax')])", ["--metric", "val_auc"],
     "--metric val_auc: the model logs"),
])
def test_a_bad_builder_is_one_line_before_anything_is_created(workdir, capsys, builder, flags,
                                                              words):
    path = workdir / "bad.py"
    if builder is not None:
        path.write_text(builder)
    flags = [f.format(file=path) for f in flags]
    model = [] if "--model" in flags else ["--model", f"{path}:build"]
    assert main(["search", *model, *flags, "--trials", "1", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not (workdir / "mlruns").exists()


@search_logic("torch")
def test_a_builder_without_the_cures_activation_warns_once(workdir, capsys):
    (workdir / "plain.py").write_text(
        "import keras\ndef build(c, s, n):\n    return keras.Sequential([keras.Input(s), "
        "keras.layers.Dense(8, activation='relu'), keras.layers.Dense(n, activation='softmax')])")
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "search.cli", "search", "--model",
                           f"{workdir / 'plain.py'}:build", "--trials", "1", "--epochs", "1"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = [line for line in proc.stderr.splitlines() if "cures.activation" in line]
    assert len(warned) == 1 and warned[0].startswith("keras-relu: warning:")


def test_a_test_split_of_another_shape_is_refused(workdir, capsys):
    np.savez(workdir / "d.npz", x_train=np.zeros((20, 4)), y_train=np.arange(20) % 2,
             x_test=np.zeros((5, 3)), y_test=np.zeros(5))
    assert main(["search", "--dataset", "npz:d.npz", "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "x_test/y_test do not match x_train/y_train" in err and err.count("\n") == 1

"""Each script of examples/ runs from start to finish with small arguments, in a fresh
folder, as a user would run it, and prints what its story promises. On the tensorflow
pass: they are backend-neutral, and the library's backends are tested elsewhere."""

import re
import subprocess
import sys

from conftest import ROOT, one_pass, worker_env

pytestmark = one_pass("tensorflow", "an example")


def _example(name, *args, cwd):
    proc = subprocess.run([sys.executable, f"{ROOT}/examples/{name}", *args], cwd=cwd,
                          env=worker_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _row(out, name):
    """The numbers of the printed table's row that starts with `name`."""
    line = next(line for line in out.splitlines() if line.split()[:1] == [name])
    return [float(v) for v in re.findall(r"-?\d+\.\d+|\b\d+\b", line[len(name):])]


def test_sugar_on_a_cnn_tracks_dead_units_and_draws_them(tmp_path):
    out = _example("sugar_cnn_dead_units.py", "--epochs", "1", "--output", "pics", cwd=tmp_path)
    for activation in ("relu", "sugar_bsilu"):
        dead_init, dead_end, accuracy = _row(out, activation)
        assert 0 <= dead_init <= 1 and 0 <= dead_end <= 1 and 0 < accuracy <= 1
        for kind in ("dead", "units"):
            assert (tmp_path / "pics" / f"{activation}_{kind}.png").stat().st_size > 5000
    assert "most dead layer" in out


def test_redo_on_a_deep_narrow_mlp_recycles_units(tmp_path):
    out = _example("redo_deep_narrow_mlp.py", "--epochs", "1", "--depth", "8", cwd=tmp_path)
    *_, recycled = _row(out, "relu+redo")
    assert recycled > 0  # ReDo found dormant units in a deep narrow ReLU MLP
    assert _row(out, "relu")[-1] == 0
    assert (tmp_path / "redo_mlp" / "relu+redo_units.png").exists()


def test_a_search_over_your_own_model_then_its_results_through_mlflow(tmp_path):
    out = _example("search_your_model.py", "--trials", "2", "--epochs", "1", cwd=tmp_path)
    assert "units" in out.split("Best trials:")[1].splitlines()[1]  # our own dimension
    assert re.search(r"Retrained study 'own-model', trial \d+: .*\(the same\)", out), out[-2000:]
    out = _example("read_results_mlflow.py", "--study", "own-model", cwd=tmp_path)
    assert len(re.findall(r"^trial-\d+ +FINISHED", out, re.M)) == 2
    assert "dead fraction by epoch [(0, " in out
    for name in ("dead_fraction.png", "unit_activity.png"):
        assert (tmp_path / "mlflow_results" / name).stat().st_size > 5000

"""The search space: declaration, overrides, space files, and its Optuna translation."""

import optuna
import pytest

import keras_relu
from search import UsageError
from search.engines import optuna as engine
from search.space import Choice, Fixed, Float, Int, build_space, default_space


def test_default_space_covers_every_activation_and_the_conditionals():
    space = default_space()
    assert space["activation"].values == tuple(keras_relu.ACTIVATIONS)
    assert set(space["clipping"].values) == {"none", "clipnorm", "clipvalue", "global_clipnorm"}
    assert space["clip_threshold"].when[0] == "clipping"
    assert space["warmup_fraction"].when == ("schedule", ("cosine_warmup",))
    assert space["momentum"].when == ("optimizer", ("sgd",))
    # Conditions only point backwards, so a single pass can resolve a config.
    for i, dim in enumerate(space.dims):
        if dim.when:
            assert dim.when[0] in space.names[:i]


def test_fix_and_choices_parse_values_by_dimension():
    space = default_space().with_cli(
        ["activation=relu", "batch_norm=on", "learning_rate=1e3", "depth=2"],
        ["optimizer=adam,sgd", "dropout=0,0.25", "initializer=he_normal"],
    )
    assert space["activation"] == Fixed("activation", "relu")
    assert space["batch_norm"].value is True
    assert space["learning_rate"].value == 1000.0
    assert space["depth"].value == 2 and isinstance(space["depth"].value, int)
    assert space["optimizer"] == Choice("optimizer", ("adam", "sgd"))
    assert space["dropout"].values == (0.0, 0.25)
    assert isinstance(space["initializer"], Fixed)  # one choice is a fixed value


@pytest.mark.parametrize(
    "fixes, choices, words",
    [
        (["activation=nope"], [], ["unknown activation 'nope'", "sugar_bsilu"]),
        (["optimizer=rmsprop"], [], ["unknown optimizer", "adamw"]),
        (["depth=2.5"], [], ["depth must be an integer"]),
        (["dropout=1.5"], [], ["dropout must be a number in [0, 1)"]),
        (["learning_rate=-1"], [], ["learning_rate must be a number > 0"]),
        (["colour=red"], [], ["unknown search dimension 'colour'"]),
        (["dropout"], [], ["--fix expects NAME=VALUE"]),
        (["activation=relu"], ["activation=relu,elu"], ["both --fix and --choices"]),
        (["clipping=none", "clip_threshold=1"], [], ["clip_threshold is set but clipping"]),
        ([], ["momentum=0.9", "optimizer=adam,adamw"], ["momentum is set but optimizer"]),
    ],
)
def test_bad_fix_or_choices_is_a_usage_error(fixes, choices, words):
    with pytest.raises(UsageError) as info:
        default_space().with_cli(fixes, choices)
    for word in words:
        assert word in str(info.value)


def test_space_files_yaml_and_toml(tmp_path):
    yaml_file = tmp_path / "space.yaml"
    yaml_file.write_text(
        "activation: [relu, sugar_bsilu]\n"
        "learning_rate: {low: 1e-4, high: 1e-2, log: true}\n"
        "depth: {value: 2}\n"
        "width: {choices: [32, 64]}\n"
    )
    space = build_space(yaml_file)
    assert space["activation"].values == ("relu", "sugar_bsilu")
    assert space["learning_rate"] == Float("learning_rate", 1e-4, 1e-2, log=True)
    assert space["depth"] == Fixed("depth", 2)
    assert space["width"] == Choice("width", (32, 64))

    toml_file = tmp_path / "space.toml"
    toml_file.write_text('batch_norm = true\n[depth]\nlow = 1\nhigh = 2\n')
    space = build_space(toml_file, fixes=["activation=elu"])
    assert space["batch_norm"].value is True
    assert space["depth"] == Int("depth", 1, 2)
    assert space["activation"].value == "elu"


@pytest.mark.parametrize(
    "text, words",
    [
        ("activation: [relu, \n", "malformed space file"),
        ("- relu\n- elu\n", "expected a mapping"),
        ("depth: {low: 3, high: 1}\n", "low 3 is above high 1"),
        ("activation: {low: 1, high: 2}\n", "activation is categorical"),
        ("activation: []\n", "empty list of choices"),
        ("depth: {low: 1, top: 2}\n", "expected a value, a list, or a mapping"),
        ("schedule: constant\nwarmup_fraction: 0.1\n", "warmup_fraction is set but schedule"),
        ("width: {low: 0, high: 8, log: true}\n", "width must be an integer in [1, 4096]"),
    ],
)
def test_malformed_or_contradictory_space_file(tmp_path, text, words):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=words.replace("[", r"\[").replace("(", r"\(")):
        build_space(path)


def test_missing_space_file(tmp_path):
    with pytest.raises(UsageError, match="cannot read space file"):
        build_space(tmp_path / "nope.yaml")


def test_optuna_translation_follows_the_conditions():
    space = default_space().with_cli([], ["clipping=none,clipnorm", "schedule=constant,exponential"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        config = engine.suggest(trial, space)
        assert set(config) == set(trial.params)  # nothing fixed here: all suggested
        assert ("clip_threshold" in config) == (config["clipping"] == "clipnorm")
        assert ("decay_rate" in config) == (config["schedule"] == "exponential")
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
        assert "warmup_fraction" not in config
        study.tell(trial, 0.0)
        seen.add(config["clipping"])
    assert seen == {"none", "clipnorm"}


def test_fixed_dimensions_are_in_the_config_but_not_suggested():
    space = default_space().with_cli(["activation=sugar_bsilu", "optimizer=sgd"])
    trial = optuna.create_study().ask()
    config = engine.suggest(trial, space)
    assert config["activation"] == "sugar_bsilu" and "activation" not in trial.params
    assert "momentum" in config and "momentum" in trial.params

"""config.training.phema_stds / phema_freq: off by default, set from the command line as a tuple,
and every bad value one ValueError naming the field."""

import pytest

from score_sde import config as config_lib
from score_sde.config import from_config
from score_sde.run import loop
from tests.helpers import tiny_config


def test_off_by_default_and_a_tuple_from_the_command_line():
    t = config_lib.load("toy/gmm", {}).training
    assert t.phema_stds == () and t.phema_freq == 0
    assert loop.Schedule.of_training(t).phema_freq is None
    over = {"training.phema_stds": "(0.05,0.1)", "training.snapshot_freq": "500"}
    t = config_lib.load("toy/gmm", over).training
    assert t.phema_stds == (0.05, 0.1) and isinstance(t.phema_stds[0], float)
    assert loop.Schedule.of_training(t).phema_freq == 500  # 0: with the snapshots
    t = config_lib.load("toy/gmm", {**over, "training.phema_freq": "20"}).training
    assert loop.Schedule.of_training(t).phema_freq == 20
    assert config_lib.load("toy/gmm", {"training.phema_stds": "0.08"}).training.phema_stds == (
        0.08,
    )


@pytest.mark.parametrize(
    "fields, needles",
    [
        ({"training.phema_stds": (0.05, 0.3)}, ["config.training.phema_stds", "0.3", "0.2887"]),
        ({"training.phema_stds": (0.0,)}, ["config.training.phema_stds", "(0, 0.2887)"]),
        ({"training.phema_stds": (-0.05,)}, ["config.training.phema_stds", "-0.05"]),
        ({"training.phema_stds": (float("nan"),)}, ["config.training.phema_stds", "nan"]),
        ({"training.phema_stds": (0.05, 0.05)}, ["config.training.phema_stds", "repeat"]),
        (
            {"training.phema_stds": (0.05,), "training.phema_freq": -1},
            ["config.training.phema_freq (-1)", ">= 0"],
        ),
        ({"training.phema_freq": 10}, ["config.training.phema_freq (10)", "phema_stds"]),
    ],
)
def test_a_bad_value_is_one_error_naming_the_field(fields, needles):
    with pytest.raises(ValueError) as e:
        from_config(tiny_config("launch", **fields))
    message = str(e.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message

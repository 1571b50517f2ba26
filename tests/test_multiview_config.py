import math

import pytest

from unrender.errors import InputError
from unrender.recon.multiview.config import apply_overrides, config_from_dict, config_to_dict, preset
from unrender.recon.multiview.pipeline import schedule_step


def test_presets_differ_in_cost():
    fast, default, quality = preset("fast"), preset("default"), preset("quality")
    assert fast.pass1.iterations < default.pass1.iterations < quality.pass1.iterations
    assert fast.pass1.tet_resolution < default.pass1.tet_resolution < quality.pass1.tet_resolution
    with pytest.raises(InputError, match="unknown preset"):
        preset("slowest")
    # the time goals: default within 10 minutes, fast within 3; quality runs its whole schedule
    assert 0 < default.max_minutes < 10 and 0 < fast.max_minutes < 3 and quality.max_minutes == 0


def test_schedules_follow_the_clock_when_the_budget_would_end_the_pass_first():
    # no budget: the step itself
    assert schedule_step(10, 0, 100, elapsed=50.0, began=0.0, limit=math.inf) == 10
    # on pace (10% of the steps in 5% of the time): the step itself
    assert schedule_step(10, 0, 100, elapsed=5.0, began=0.0, limit=100.0) == 10
    # behind (10% of the steps in 50% of the time): half-way through the schedule, and the last step at the limit
    assert schedule_step(10, 0, 100, elapsed=50.0, began=0.0, limit=100.0) == 50
    assert schedule_step(10, 0, 100, elapsed=100.0, began=0.0, limit=100.0) == 99
    # resumed at step 60 with 40 s left of the budget: the remaining steps spread over the remaining time
    assert schedule_step(61, 60, 100, elapsed=80.0, began=60.0, limit=100.0) == 80
    assert schedule_step(10, 0, 100, elapsed=5.0, began=5.0, limit=5.0) == 10  # no time left: no division by zero


def test_overrides_typed_and_checked():
    cfg = apply_overrides(preset("fast"), ["pass1.iterations=12", "triangles=5000", "pass2.learn_normal_map=false",
                                           "max_minutes=4", "device=cpu"])
    assert cfg.pass1.iterations == 12 and cfg.triangles == 5000 and cfg.pass2.learn_normal_map is False
    assert cfg.max_minutes == 4.0 and cfg.device == "cpu"
    assert preset("fast").pass1.iterations != 12  # the preset itself is untouched
    for bad, msg in (("pass1.nope=1", "unknown field"), ("pass3.iterations=1", "not a section"),
                     ("pass1.iterations=many", "expected a value"), ("triangles", "KEY=VALUE")):
        with pytest.raises(InputError, match=msg):
            apply_overrides(preset("fast"), [bad])


def test_config_round_trip():
    cfg = apply_overrides(preset("quality"), ["pass2.iterations=3"])
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_overrides_parse_tuples_by_their_element_type():
    from unrender.singleview.train_config import apply_overrides as singleview_overrides
    from unrender.singleview.train_config import preset as singleview_preset

    cfg = singleview_overrides(singleview_preset("fast", "implicit"), ["implicit.query_mix=0.25,0.25,0,0.5"])
    assert cfg.implicit.query_mix == (0.25, 0.25, 0.0, 0.5)  # floats stay floats (ints would truncate to 0)
    assert singleview_overrides(cfg, ["implicit.query_mix="]).implicit.query_mix == ()
    assert singleview_overrides(cfg, ["implicit.widths=[8, 16]"]).implicit.widths == (8, 16)
    with pytest.raises(InputError, match="implicit.widths"):
        singleview_overrides(cfg, ["implicit.widths=8,x"])

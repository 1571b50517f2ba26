import pytest

from unrender.errors import InputError
from unrender.recon.multiview.config import apply_overrides, config_from_dict, config_to_dict, preset


def test_presets_differ_in_cost():
    fast, default, quality = preset("fast"), preset("default"), preset("quality")
    assert fast.pass1.iterations < default.pass1.iterations < quality.pass1.iterations
    assert fast.pass1.tet_resolution < default.pass1.tet_resolution < quality.pass1.tet_resolution
    with pytest.raises(InputError, match="unknown preset"):
        preset("slowest")


def test_overrides_typed_and_checked():
    cfg = apply_overrides(preset("fast"), ["pass1.iterations=12", "triangles=5000", "pass2.learn_normal_map=false",
                                           "max_minutes=2.5", "device=cpu"])
    assert cfg.pass1.iterations == 12 and cfg.triangles == 5000 and cfg.pass2.learn_normal_map is False
    assert cfg.max_minutes == 2.5 and cfg.device == "cpu"
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

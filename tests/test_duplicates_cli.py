"""`unrender synth --kind duplicates` and `unrender duplicates`: wiring and error reporting (the solver is tested
in test_duplicates_poses.py)."""

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from unrender.cli import app


def test_synth_duplicates_then_bad_masks_exit_with_one_sentence(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["synth", str(tmp_path / "s"), "--kind", "duplicates", "--copies", "3", "--resolution", "96"])
    assert r.exit_code == 0, r.output
    assert len(np.unique(np.asarray(Image.open(tmp_path / "s" / "instances.png")))) == 4
    Image.fromarray(np.ones((48, 48), np.uint8)).save(tmp_path / "small.png")
    r = runner.invoke(app, ["duplicates", str(tmp_path / "s" / "image.png"), "--masks", str(tmp_path / "small.png"),
                            "--fov", "40", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "small.png" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o" / "poses.json").exists()

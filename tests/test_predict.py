"""`declip predict` on images (declip_plugin/commands/runs.py, engine/predict.py) with bad input: one
`error:` line naming what was given; exit status 2 where nothing could be done (the output left as it was),
1 where some images failed and the others were written. Videos: tests/test_predict_video.py."""
import json

from tests.conftest import assert_one_line, run_cli


def test_predict_out_that_is_a_file(world, tmp_path, capsys):
    (tmp_path / "out").write_text("keep")
    image = next((world / "data").rglob("*.png"))
    code, _, err = run_cli(["predict", image, "--weights_path", world / "tiny.pth", "--out", tmp_path / "out",
                            "--device", "cpu"], capsys)
    assert code == 2
    assert_one_line(err, "--out", "is a file")
    assert (tmp_path / "out").read_text() == "keep"


def test_predict_missing_checkpoint(world, tmp_path, capsys):
    image = next((world / "data").rglob("*.png"))
    code, _, err = run_cli(["predict", image, "--weights_path", tmp_path / "none.pth", "--out", tmp_path / "p"], capsys)
    assert code == 2
    assert_one_line(err, "none.pth", "does not exist")


def test_predict_reports_a_bad_image_once_and_keeps_the_good(world, tmp_path, capsys):
    good = next((world / "data").rglob("*.png"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nxx")
    code, _, err = run_cli(["predict", good, bad, "--weights_path", world / "tiny.pth", "--out", tmp_path / "p",
                            "--device", "cpu"], capsys)
    assert code == 1
    assert_one_line(err, "bad.png")
    summary = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert [p["image"] for p in summary["predictions"]] == [str(good)]

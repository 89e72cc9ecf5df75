"""The command line end to end: `python -m skvae` in a subprocess, the report in
headless Chromium, and every user mistake ending in one line, not a traceback."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skvae
from skvae import VAETransformer
from skvae.cli import TOP_HEADER, main
from skvae.datasets import load_demo

from .conftest import FAST

REPO = Path(__file__).resolve().parents[1]
# Few epochs: these tests check the plumbing, not the model.
FAST_ARGS = ["--max-iter", "5", "--random-state", "0"]


def run_skvae(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "skvae", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def table_with_text_id_and_nan(n=2000, seed=0):
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame(
        {
            "name": [f"item-{i}" for i in range(n)],
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "city": rng.choice(["Oslo", "Lima", "Pune"], size=n),
            "c": rng.normal(size=n),
            "comment": [f"note {rng.randint(10**6)}" for _ in range(n)],
        }
    )
    frame.loc[n - 1, ["a", "b", "c"]] = [9.0, -9.0, 9.0]  # the planted outlier
    frame.loc[7, "b"] = np.nan
    return frame


def test_detect_on_the_demo_data(tmp_path):
    result = run_skvae("detect", *FAST_ARGS, "--output", tmp_path / "scores.csv")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "189 of 3772 rows flagged as outliers" in result.stdout  # --contamination 0.05
    assert re.search(r"ROC-AUC against the known anomalies 0\.\d+", result.stdout)
    assert "skvae fit" not in result.stderr  # no progress bar: stderr is not a terminal
    # Library warnings come as one line that names the command-line option.
    assert "without converging; raise --max-iter." in result.stderr
    assert "ConvergenceWarning" not in result.stderr
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns) == ["patient_id", "score", "p_value", "outlier", "missing"]
    assert scores["patient_id"].tolist() == load_demo()["patient_id"].tolist()
    assert scores["outlier"].sum() == 189
    assert scores["p_value"].between(0, 1).all()


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory):
    """skvae detect on a CSV with an id column, a NaN, a categorical text
    column and a free-text one."""
    folder = tmp_path_factory.mktemp("detect")
    frame = table_with_text_id_and_nan()
    frame.to_csv(folder / "data.csv", index=False)
    result = run_skvae(
        "detect",
        folder / "data.csv",
        *FAST_ARGS,
        "--id-column",
        "name",
        "--quiet",
        "--output",
        folder / "scores.csv",
        "--report",
        folder / "report.html",
        "--save-model",
        folder / "model.skvae",
    )
    return folder, frame, result


def test_detect_on_a_csv_keeps_every_row_and_names_what_it_left_out(detect_run):
    folder, frame, result = detect_run
    assert result.returncode == 0, result.stderr
    assert (
        "left out column(s) comment (text with 2000 distinct values in 2000 rows" in result.stderr
    )
    assert "city" not in result.stderr  # three categories: modelled
    assert "skvae fit" not in result.stderr  # --quiet
    assert "100 of 2000 rows flagged as outliers" in result.stdout
    assert "1 row(s) have missing values" in result.stdout
    lines = result.stdout.splitlines()
    first_outlier = lines[lines.index(TOP_HEADER) + 2]
    assert first_outlier.split()[0] == "item-1999"  # the planted outlier leads the table
    scores = pd.read_csv(folder / "scores.csv", keep_default_na=False)
    assert scores["name"].tolist() == frame["name"].tolist()
    assert scores.loc[7, "missing"] == "b"
    assert (scores["missing"].drop(index=7) == "").all()
    assert np.isfinite(scores["score"]).all()
    assert bool(scores.loc[1999, "outlier"])


def test_score_with_the_saved_model_matches_detect(detect_run):
    folder, frame, _ = detect_run
    # A small new batch, in another order and format, with the NaN row and the outlier.
    batch = frame.iloc[[1999, 3, 7, 12, 5, 8, 100, 200, 300, 400]]
    batch.to_parquet(folder / "new.parquet")
    result = run_skvae(
        "score",
        folder / "model.skvae",
        folder / "new.parquet",
        "--id-column",
        "name",
        "--fdr",
        "0.1",
        "--output",
        folder / "again.csv",
    )
    assert result.returncode == 0, result.stderr
    # 2,000 rows: cross-conformal calibration (the default up to 2,000), every row calibrates.
    assert "Benjamini-Hochberg at FDR 0.1 on p-values from 2000 calibration rows" in result.stdout
    after = pd.read_csv(folder / "again.csv", keep_default_na=False)
    assert after["name"].tolist() == batch["name"].tolist()
    assert after["outlier"].tolist() == [True] + [False] * 9
    assert after["missing"].tolist()[2] == "b"
    before = pd.read_csv(folder / "scores.csv").set_index("name").loc[batch["name"]]
    np.testing.assert_allclose(after["score"], before["score"], rtol=1e-9)
    np.testing.assert_allclose(after["p_value"], before["p_value"])


# .ci/run installs Chromium and sets this, so there a missing browser fails
# the test; on a machine with Python alone the README's test command skips it.
REQUIRE_BROWSER = os.environ.get("SKVAE_REQUIRE_BROWSER") == "1"


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = "headless Chromium (chromium, chromium-browser or google-chrome on PATH)"
    if REQUIRE_BROWSER:
        pytest.fail(f"{message} is needed to check the report (SKVAE_REQUIRE_BROWSER=1)")
    pytest.skip(f"{message} not found; set SKVAE_REQUIRE_BROWSER=1 to make this a failure")


# Written into a copy of the report: lists each image's decoded size once loaded.
IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var sizes = Array.prototype.map.call(document.images, function (img) {
    return img.naturalWidth + "x" + img.naturalHeight;
  });
  var out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = sizes.join(" ");
  document.body.appendChild(out);
});
</script>"""


def chromium(*args, profile):
    command = [
        find_chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_report_renders_in_headless_chromium(detect_run, tmp_path):
    find_chromium()  # skips or fails first, as SKVAE_REQUIRE_BROWSER says
    folder, _, _ = detect_run
    page = (folder / "report.html").read_text(encoding="utf-8")
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    images = re.findall(r'<img src="data:image/png;base64,', page)
    assert len(images) == 6  # scores, latent space, loss curves, 3 explained rows
    for needle in ["Top outliers", "item-1999", "Parameters", "max_iter", "city", "Data"]:
        assert needle in page
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    dom = chromium("--dump-dom", probe.as_uri(), profile=tmp_path / "profile").stdout
    sizes = re.search(r'<pre id="image-check">([^<]*)</pre>', dom)
    assert sizes, dom[-2000:]
    sizes = [tuple(map(int, size.split("x"))) for size in sizes.group(1).split()]
    assert len(sizes) == 6
    assert all(width > 200 and height > 200 for width, height in sizes), sizes
    # And it draws: a screenshot of the page is far from blank.
    from PIL import Image

    shot = tmp_path / "page.png"
    chromium(
        "--window-size=1200,1600",
        f"--screenshot={shot}",
        (folder / "report.html").as_uri(),
        profile=tmp_path / "profile",
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10
    assert (pixels < 128).mean() > 0.01  # text and plot lines, not an empty page


def test_a_user_mistake_is_one_line_without_traceback(tmp_path):
    result = run_skvae("detect", tmp_path / "missing.csv")
    assert result.returncode == 2
    assert result.stderr.strip() == f"skvae: error: no such file: {tmp_path / 'missing.csv'}"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "fake.parquet").write_text("not parquet")
    (tmp_path / "empty.csv").write_text("")
    names = [f"person {i}" for i in range(30)]
    pd.DataFrame({"who": names, "empty": np.nan}).to_csv(tmp_path / "text.csv", index=False)
    pd.DataFrame({"a": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "small.csv", index=False)
    (tmp_path / "one_row.csv").write_text("a,b\n1,2\n")
    (tmp_path / "notamodel.skvae").write_text("hello")
    rng = np.random.RandomState(0)
    VAETransformer(**FAST).fit(rng.normal(size=(50, 1))).save(tmp_path / "transformer.skvae")
    return tmp_path


@pytest.mark.parametrize(
    "args, message",
    [
        (["detect", "{dir}"], "is a folder"),
        (["detect", "{dir}/binary.csv"], "cannot read .*binary.csv as CSV"),
        (["detect", "{dir}/fake.parquet"], "cannot read .*fake.parquet as Parquet"),
        (["detect", "{dir}/empty.csv"], "cannot read .*empty.csv as CSV"),
        (["detect", "{dir}/text.csv"], "has no column skvae can model"),
        (["detect", "{dir}/small.csv", "--id-column", "nope"], "has no column 'nope'"),
        (["detect", "{dir}/one_row.csv"], "one_row.csv has 1 row; .* needs at least 2"),
        (["detect", "{dir}/small.csv", "--columns", "a,zz"], "has no column 'zz'"),
        (["detect", "{dir}/small.csv", "--output", "{dir}/no/such/dir/x.csv"], "cannot write"),
        (["score", "{dir}/missing.skvae", "{dir}/small.csv"], "no such model file"),
        (["score", "{dir}/notamodel.skvae", "{dir}/small.csv"], "is not a model saved by skvae"),
        (["score", "{dir}/transformer.skvae", "{dir}/small.csv"], "holds a VAETransformer"),
    ],
)
def test_each_user_mistake_gets_one_clear_line(files, capsys, args, message):
    args = [arg.format(dir=files) for arg in args] + ["--quiet", "--max-iter", "2"] * (
        args[0] == "detect"
    )
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 or "warning" in " ".join(err[:-1]), err
    assert err[-1].startswith("skvae: error: ")
    assert re.search(message, err[-1]), err[-1]


def test_score_names_the_columns_a_file_lacks(tmp_path, capsys):
    frame = table_with_text_id_and_nan(60)
    frame.to_csv(tmp_path / "data.csv", index=False)
    args = ["detect", str(tmp_path / "data.csv"), "--quiet", "--max-iter", "2"]
    assert main([*args, "--save-model", str(tmp_path / "m.skvae")]) == 0
    frame.drop(columns=["b"]).to_csv(tmp_path / "less.csv", index=False)
    capsys.readouterr()
    assert main(["score", str(tmp_path / "m.skvae"), str(tmp_path / "less.csv")]) == 2
    assert "has no column 'b'" in capsys.readouterr().err


def test_trim_fraction_zero_fits_on_every_row_for_novelty_detection(tmp_path, capsys):
    # Vetted normal rows: the user turns the trim off, and the saved model
    # (which skvae score reuses on new rows) was fitted that way.
    table_with_text_id_and_nan(60).to_csv(tmp_path / "clean.csv", index=False)
    args = ["detect", str(tmp_path / "clean.csv"), "--quiet", "--max-iter", "2"]
    for trim, expected in (("0", 0.0), ("auto", "auto")):
        model_path = tmp_path / f"m{trim}.skvae"
        assert main([*args, "--trim-fraction", trim, "--save-model", str(model_path)]) == 0
        assert skvae.load(model_path).trim_fraction == expected


def test_novelty_flag_saves_a_model_that_scores_new_rows_by_distance_too(tmp_path, capsys):
    table_with_text_id_and_nan(60).to_csv(tmp_path / "clean.csv", index=False)
    model_path = tmp_path / "m.skvae"
    args = ["detect", str(tmp_path / "clean.csv"), "--quiet", "--max-iter", "2", "--novelty"]
    assert main([*args, "--save-model", str(model_path)]) == 0
    assert "its own nearest training row" in capsys.readouterr().out
    model = skvae.load(model_path)
    assert model.novelty is True
    assert model.neighbor_rows_ is not None and model.neighbor_rows_.shape[0] >= 2


def test_bad_option_values_are_refused_by_the_parser(capsys):
    for args in (
        ["detect", "--contamination", "0.9"],
        ["detect", "--trim-fraction", "0.5"],
        ["detect", "--trim-fraction", "none"],
        ["detect", "--fdr", "0.05", "--contamination", "0.1"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_fdr_warns_when_the_p_values_are_too_coarse_to_flag(tmp_path, capsys):
    table_with_text_id_and_nan(300).to_csv(tmp_path / "data.csv", index=False)
    args = ["detect", str(tmp_path / "data.csv"), "--quiet", "--max-iter", "2", "--fdr", "0.1"]
    assert main(args) == 0
    # 30 calibration rows: p >= 1/31, and BH needs p <= 0.1 k / 300.
    assert "flags rows only if at least 97 of these 300 are that extreme" in capsys.readouterr().err


def test_ctrl_c_outside_training_ends_quietly(monkeypatch, capsys):
    def interrupted(path, args):
        raise KeyboardInterrupt

    monkeypatch.setattr("skvae.cli.read_table", interrupted)
    assert main(["detect", "data.csv"]) == 130
    assert capsys.readouterr().err == "skvae: interrupted\n"


def test_columns_skvae_cannot_model_are_named(tmp_path, capsys):
    frame = table_with_text_id_and_nan(100).drop(columns=["comment"])
    frame["when"] = pd.date_range("2024-01-01", periods=100)  # modelled: days and weekday
    frame["tags"] = [[1, 2]] * 100
    frame.to_parquet(tmp_path / "data.parquet")
    args = ["detect", str(tmp_path / "data.parquet"), "--id-column", "name", "--quiet"]
    assert main([*args, "--max-iter", "2", "--output", str(tmp_path / "out.csv")]) == 0
    err = capsys.readouterr().err
    assert "left out column(s) tags (a type skvae cannot model (object)" in err
    assert "when" not in err
    assert len(pd.read_csv(tmp_path / "out.csv")) == 100


def test_semicolon_and_tab_separated_files_are_read(tmp_path):
    frame = table_with_text_id_and_nan(50)[["a", "b", "city"]]
    frame.to_csv(tmp_path / "semi.csv", sep=";", index=False, decimal=",")
    frame.to_csv(tmp_path / "tabs.tsv.gz", sep="\t", index=False)
    from skvae._reading import read_table

    pd.testing.assert_frame_equal(read_table(tmp_path / "semi.csv")[0], frame)  # 0,5 is 0.5
    pd.testing.assert_frame_equal(read_table(tmp_path / "tabs.tsv.gz")[0], frame)

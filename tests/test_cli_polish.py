"""The command line's manners: outputs checked before the fit, a line per
written file, --version, every option described, a progress bar only on a
terminal, warnings pointing at the caller's code."""

import argparse
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skvae
from skvae import VAEAnomalyDetector
from skvae.cli import _parser, main

from .conftest import FAST

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_csv(tmp_path):
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    frame.loc[41] = [8.0, -8.0, 8.0]
    path = tmp_path / "small.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def fit_never_runs(monkeypatch):
    calls = []

    def fit(self, X, y=None):
        calls.append(len(X))
        raise AssertionError("fit ran")

    monkeypatch.setattr(VAEAnomalyDetector, "fit", fit)
    return calls


@pytest.mark.parametrize(
    "option, target, expected",
    [
        ("--output", "missing/dir/scores.csv", r"cannot write .*scores.csv \(--output\): No such"),
        ("--report", ".", r"cannot write .* \(--report\): it is a folder"),
        ("--save-model", "nowhere/model.skvae", r"cannot write .*model.skvae \(--save-model\)"),
        ("--output", "small.csv", "--output and FILE both name .*small.csv"),
    ],
)
def test_an_output_that_cannot_be_written_fails_before_the_fit(
    small_csv, fit_never_runs, capsys, option, target, expected
):
    import re

    started = time.perf_counter()
    status = main(["detect", str(small_csv), option, str(small_csv.parent / target)])
    assert status == 2
    assert fit_never_runs == []
    assert time.perf_counter() - started < 5
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("skvae: error: ")
    assert re.search(expected, err[0]), err[0]
    assert small_csv.exists()


def test_a_failed_fit_leaves_no_empty_output_files_behind(small_csv, fit_never_runs, tmp_path):
    outputs = [tmp_path / "scores.csv", tmp_path / "model.skvae"]
    with pytest.raises(AssertionError, match="fit ran"):
        main(
            ["detect", str(small_csv), "--output", str(outputs[0]), "--save-model", str(outputs[1])]
        )
    assert fit_never_runs == [60]
    assert not any(path.exists() for path in outputs)


def test_score_checks_its_output_before_scoring(small_csv, tmp_path, capsys):
    model = tmp_path / "model.skvae"
    detector = VAEAnomalyDetector(**FAST).fit(pd.read_csv(small_csv))
    detector.save(model)
    assert main(["score", str(model), str(small_csv), "--output", str(model)]) == 2
    assert "--output and MODEL both name" in capsys.readouterr().err
    assert skvae.load(model).offset_ == detector.offset_  # the model file is intact


def test_one_line_per_written_file_and_flags_from_predict(small_csv, tmp_path, capsys):
    output, model = tmp_path / "scores.csv", tmp_path / "model.skvae"
    args = ["detect", str(small_csv), "--max-iter", "20", "--quiet", "--top", "2"]
    assert main([*args, "--output", str(output), "--save-model", str(model)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        f"wrote {output} (60 rows)",
        f"wrote {model} (the fitted model, for skvae score)",
    ]
    assert not any(line.startswith("read ") for line in out)  # --quiet
    written = pd.read_csv(output)
    detector = skvae.load(model)
    frame = pd.read_csv(small_csv)
    np.testing.assert_array_equal(written["outlier"], detector.predict(frame) == -1)
    assert written["score"].idxmin() == 41


def test_version():
    result = subprocess.run(
        [sys.executable, "-m", "skvae", "--version"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"skvae {skvae.__version__}"


def subcommands():
    parser = _parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", ["detect", "score"])
def test_help_describes_every_option_and_the_formats(command):
    subparser = subcommands()[command]
    text = subparser.format_help()
    for action in subparser._actions:
        assert action.help, f"{action.option_strings or action.dest} has no help"
        for option in action.option_strings:
            assert option in text
    for fmt in ("Parquet", ".xlsx", "cp1252", "semicolon", ".gz"):
        assert fmt in text


def run_detect(small_csv, stderr):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "skvae", "detect", str(small_csv), "--max-iter", "5"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def test_progress_bar_is_silent_when_stderr_is_redirected(small_csv, tmp_path):
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        assert run_detect(small_csv, stderr).wait(timeout=300) == 0
    written = log.read_bytes()
    assert b"\r" not in written
    assert b"skvae fit" not in written
    assert b"without converging; raise --max-iter" in written  # the warning still comes


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_progress_bar_is_drawn_on_a_terminal(small_csv):
    import fcntl
    import struct
    import termios

    leader, follower = os.openpty()
    # A new pseudo-terminal is 0 columns wide: tqdm would draw an empty bar.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks = []

    def drain():
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    process = run_detect(small_csv, follower)
    os.close(follower)
    assert process.wait(timeout=300) == 0
    reader.join(timeout=10)
    os.close(leader)
    written = b"".join(chunks)
    assert b"skvae fit" in written and b"5/5" in written


def test_verbose_fit_writes_nothing_to_a_captured_stderr(capsys):
    X = np.random.RandomState(0).normal(size=(50, 2))
    VAEAnomalyDetector(**{**FAST, "max_iter": 3}, verbose=True).fit(X)
    assert capsys.readouterr().err == ""


def convergence_warnings(fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit()
    return [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_a_warning_points_at_the_callers_line():
    X = np.random.RandomState(0).normal(size=(50, 2))
    detector = VAEAnomalyDetector(**{**FAST, "max_iter": 2, "early_stopping": False})
    caught = convergence_warnings(lambda: detector.fit(X))  # this line
    assert len(caught) == 1
    assert caught[0].filename == __file__
    assert "this line" in Path(__file__).read_text().splitlines()[caught[0].lineno - 1]
    # Through scikit-learn's wrappers too: the caller's pipeline.fit line.
    pipeline = make_pipeline(StandardScaler(), detector)
    caught = convergence_warnings(lambda: pipeline.fit(X))
    assert [w.filename for w in caught] == [__file__]


@pytest.mark.parametrize("written", ["\\t", "tab", "\t"])
def test_sep_takes_a_tab_as_a_shell_passes_it(tmp_path, capsys, written):
    path = tmp_path / "data.txt"
    frame = pd.DataFrame(np.random.RandomState(0).normal(size=(40, 2)), columns=["x,1", "y"])
    frame.to_csv(path, sep="\t", index=False)
    assert main(["detect", str(path), "--sep", written, "--max-iter", "2", "--top", "0"]) == 0
    assert f"read {path}: 40 rows x 2 columns (encoding utf-8, separator '\\t')" in (
        capsys.readouterr().out
    )
    with pytest.raises(SystemExit):
        main(["detect", str(path), "--sep", "ab"])
    assert "--sep: must be one character" in capsys.readouterr().err

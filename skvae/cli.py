"""Command line: ``skvae detect`` finds the outliers of a table, ``skvae score``
scores new rows with a saved model.

Built on skvae's public API (the estimator's fit, score_samples, predict,
feature_contributions and calibration_scores_; load; skvae.conformal) and on the two
modules that exist for it: ``_reading`` turns the user's file into a
DataFrame, ``_report`` writes the HTML report. User mistakes (a missing or
unreadable file, no numeric column, a file that is not a model, an output
that cannot be written) end with one line on stderr and exit status 2, never
a traceback; outputs are checked before any work is done.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from . import ModelFileError, VAEAnomalyDetector, __version__, load
from ._reading import FORMATS_READ, PARQUET_SUFFIXES, ReadError
from ._reading import read_table as _read_file
from ._typing import TypingNote
from .conformal import benjamini_hochberg, conformal_pvalues
from .datasets import load_demo

# How many features the outlier table names per row.
TOP_FEATURES = 3
TOP_HEADER = "Top outliers, with each one's largest feature contributions (feature=value (+c)):"
# Exit status for user mistakes (argparse uses the same for bad options).
USAGE_ERROR = 2


class UserError(Exception):
    """A mistake the user can fix; printed as one line, no traceback."""


# ---------------------------------------------------------------- arguments
def _option_type(convert, accept, expected):
    """An argparse ``type``: ``convert(text)`` when ``accept`` holds for it."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return parse


def _auto_or_number(text):
    return text if text == "auto" else float(text)


_contamination = _option_type(
    _auto_or_number,
    lambda value: value == "auto" or 0.0 < value <= 0.5,
    "'auto' or a number in (0, 0.5]",
)
_trim_fraction = _option_type(
    _auto_or_number,
    lambda value: value == "auto" or 0.0 <= value < 0.5,
    "'auto' or a number in [0, 0.5)",
)
_fdr = _option_type(float, lambda value: 0.0 < value < 1.0, "a number in (0, 1)")
_positive_int = _option_type(int, lambda value: value >= 1, "a positive integer")
_count = _option_type(int, lambda value: value >= 0, "a whole number, 0 or more")
# What a shell passes for a tab: '\t' arrives as a backslash and a t.
_TAB_NAMES = {"\\t", "tab", "TAB"}
_separator = _option_type(
    lambda text: "\t" if text in _TAB_NAMES else text,
    lambda value: len(value) == 1 and value not in '\n\r"',
    "one character, such as ';' or '\\t'",
)
_mark = _option_type(
    str,
    lambda value: len(value) == 1 and not value.isalnum() and value not in '\n\r"',
    "one character that is not a letter or digit, such as ',' or '.'",
)


def _add_reading_options(parser):
    """How to read FILE; each is decided from the file when not given."""
    reading = parser.add_argument_group("reading FILE (each decided from the file unless given)")
    reading.add_argument(
        "--encoding",
        metavar="NAME",
        help="text encoding of a CSV file, such as utf-8 or cp1252 "
        "(default: utf-8, with or without BOM, or utf-16 when the bytes say so, else cp1252)",
    )
    reading.add_argument(
        "--sep",
        type=_separator,
        metavar="CHAR",
        help="field separator of a CSV file, such as ';' or '\\t' (default: the one of "
        "',' ';' tab '|' that splits every line alike)",
    )
    reading.add_argument(
        "--decimal",
        type=_mark,
        metavar="CHAR",
        help="decimal mark of the numbers in the file (default '.'; ',' in a file not "
        "separated by commas when its numbers are written 1,5)",
    )
    reading.add_argument(
        "--thousands",
        type=_mark,
        metavar="CHAR",
        help="thousands separator of the numbers in the file, such as ',' or '.' "
        "(default: none; formatted numbers are recognised when the columns are typed)",
    )
    reading.add_argument(
        "--sheet",
        metavar="NAME",
        help="sheet of an Excel file to read, by name or number from 1 (default: the first)",
    )


def _add_output_options(parser, flagging):
    """Options both commands take; ``--fdr`` goes into the ``flagging`` group."""
    _add_reading_options(parser)
    parser.add_argument(
        "--id-column",
        metavar="COL",
        help="column copied to the output as the row id, and not modelled",
    )
    parser.add_argument(
        "--output",
        metavar="PATH",
        help="write every row's id, score, p_value, outlier flag and missing columns to "
        "this CSV (or .parquet) file",
    )
    flagging.add_argument(
        "--fdr",
        type=_fdr,
        metavar="LEVEL",
        help="flag rows by Benjamini-Hochberg on the p-values at this false-discovery "
        "rate, instead of the model's threshold. A model fitted on 10 to 2,000 rows "
        "calibrates its p-values on every row (cross-conformal), a larger one on its 10%% "
        "validation rows; no p-value is below 1/(calibration rows + 1), so BH flags best "
        "on small batches of new rows (skvae score)",
    )
    parser.add_argument(
        "--top", type=_count, default=10, help="how many outliers to list (default 10)"
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no account of how FILE was read",
    )


def _parser():
    parser = argparse.ArgumentParser(
        prog="skvae",
        description="Find the strange rows of a table with a variational autoencoder.",
        epilog=f"Formats read: {FORMATS_READ}.",
    )
    parser.add_argument("--version", action="version", version=f"skvae {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{detect,score}")

    detect = commands.add_parser(
        "detect",
        help="fit a detector on a table and flag its outliers",
        description="Fit a VAE outlier detector on FILE and score every row of it.",
        epilog=f"Formats read: {FORMATS_READ}.",
    )
    detect.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="the table: CSV, Parquet or Excel (formats below); the built-in demo if omitted",
    )
    flagging = detect.add_mutually_exclusive_group()
    flagging.add_argument(
        "--contamination",
        type=_contamination,
        default=0.05,
        help="share of rows to flag, or 'auto' for Tukey's fence on the scores (default "
        "0.05, a fixed share to review; the Python API defaults to 'auto')",
    )
    detect.add_argument(
        "--scoring",
        choices=["elbo", "iwae", "reconstruction"],
        default="elbo",
        help="the score: the evidence lower bound (default), the tighter importance-weighted "
        "bound, or the negative reconstruction error",
    )
    detect.add_argument(
        "--columns",
        action="append",
        metavar="A,B,...",
        help="columns to use, comma-separated (repeatable); default: all but the id column",
    )
    detect.add_argument(
        "--report", metavar="PATH", help="write a self-contained HTML report to this file"
    )
    detect.add_argument(
        "--save-model",
        metavar="PATH",
        help="save the fitted model to this file, to score new rows with skvae score",
    )
    detect.add_argument(
        "--random-state",
        type=int,
        default=0,
        help="seed of the weights, the shuffling and the validation split: the same seed "
        "gives the same scores (default 0)",
    )
    detect.add_argument(
        "--max-iter",
        type=_positive_int,
        default=None,
        help="epochs at most (default: an automatic budget that ends by itself: 500 "
        "gradient steps of 256 rows on small files, fewer and larger steps on large ones)",
    )
    detect.add_argument(
        "--trim-fraction",
        type=_trim_fraction,
        default="auto",
        help="share of each training batch, its worst-fitting rows, left out of the fit so "
        "that outliers in FILE are not learned as normal (default 'auto': 0.2; 0 with "
        "--novelty)",
    )
    detect.add_argument(
        "--novelty",
        action="store_true",
        help="every row of FILE is known to be normal (vetted rows, to screen new rows against "
        "with skvae score): fit on all of them and add each row's distance to them to its "
        "score, the stronger detector for new rows",
    )
    _add_output_options(detect, flagging)

    score = commands.add_parser(
        "score",
        help="score a table with a model saved by skvae detect --save-model",
        description="Score every row of FILE with the model in MODEL.",
        epilog=f"Formats read: {FORMATS_READ}.",
    )
    score.add_argument("model", metavar="MODEL", help="model file written by --save-model")
    score.add_argument("file", metavar="FILE", help="the table: CSV, Parquet or Excel")
    _add_output_options(score, score)
    return parser


# -------------------------------------------------------------------- input
def read_table(path, args):
    """The table in ``path``, read with the options in ``args``, saying how
    it was read unless ``--quiet``; a UserError when it cannot be read."""
    try:
        frame, reading = _read_file(
            path,
            encoding=args.encoding,
            sep=args.sep,
            decimal=args.decimal,
            thousands=args.thousands,
            sheet=args.sheet,
        )
    except ReadError as error:
        raise UserError(str(error)) from error
    if not args.quiet:
        print(reading.describe(frame))
    return frame


def _check_columns(frame, names, source):
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise UserError(
            f"{source} has no column {', '.join(map(repr, missing))}; "
            f"its columns are {', '.join(frame.columns)}"
        )


def feature_columns(frame, columns, exclude, source):
    """The columns handed to the model: those named by ``--columns``, or all
    but the id column. The model's typing (skvae._typing) reads them and
    warns about any it leaves out."""
    if columns:
        wanted = [name.strip() for group in columns for name in group.split(",") if name.strip()]
        _check_columns(frame, wanted, source)
        return wanted
    wanted = [name for name in frame.columns if name not in exclude]
    if not wanted:
        raise UserError(f"{source} has no column to score")
    return wanted


def model_input(frame, columns):
    """``frame[columns]`` with infinite numbers as missing values."""
    X = frame[columns].copy()
    for name in columns:
        if ptypes.is_float_dtype(X[name].dtype):
            X[name] = X[name].replace([np.inf, -np.inf], np.nan)
    return X


def missing_columns(detector, X):
    """Per row, the comma-joined names of its missing modelled columns (a
    column the model left out is not missing from any row)."""
    table = detector.describe_columns()
    modelled = list(table.loc[table["modelled as"] != "left out", "column"])
    names = np.array(modelled, dtype=object)
    return [",".join(names[row]) for row in X[modelled].isna().to_numpy()]


def _ids(frame, id_column, source):
    if id_column is None:
        return "row", pd.RangeIndex(len(frame))
    _check_columns(frame, [id_column], source)
    return id_column, frame[id_column].to_numpy()


# ------------------------------------------------------------------ scoring
def score_table(detector, X, ids, missing, fdr=None):
    """One output row per input row, in order: id, score, p-value, flag."""
    id_name, id_values = ids
    try:
        scores = detector.score_samples(X)
        # The detector's own rule flags the rows (a second pass over X).
        outlier = detector.predict(X) == -1 if fdr is None else None
    except ValueError as error:  # rows too far from the training data to evaluate
        raise UserError(_first_line(error)) from error
    pvalues = conformal_pvalues(detector.calibration_scores_, scores)
    if fdr is not None:
        _warn_if_fdr_cannot_flag(len(detector.calibration_scores_), len(scores), fdr)
        outlier = benjamini_hochberg(pvalues, fdr)
    return pd.DataFrame(
        {
            id_name: id_values,
            "score": scores,
            "p_value": pvalues,
            "outlier": outlier,
            "missing": missing,
        }
    )


def _warn_if_fdr_cannot_flag(n_calibration, n_rows, fdr):
    """Say so when the p-values are too coarse for Benjamini-Hochberg to flag one row.

    No p-value is below 1 / (n_calibration + 1), and BH flags k of n rows only
    when k of them are at most fdr * k / n: with few calibration rows and many
    scored rows it cannot flag a lone outlier, however strange.
    """
    needed = math.ceil(n_rows / (fdr * (n_calibration + 1)) - 1e-9)
    if needed > 1:
        _warn(
            f"p-values from {n_calibration} calibration rows are at least "
            f"{1 / (n_calibration + 1):.3g}, so Benjamini-Hochberg at FDR {fdr:g} flags rows "
            f"only if at least {needed} of these {n_rows} are that extreme; score new rows "
            "in smaller batches with skvae score, or flag by --contamination"
        )


def top_outliers(detector, X, result, n):
    """The ``n`` lowest-scoring rows with their largest feature contributions."""
    top = result.nsmallest(n, "score")
    if top.empty:  # --top 0
        return top.drop(columns=["missing"]).assign(most_anomalous_features=[])
    # One contribution per modelled column: columns the model left out have none.
    contributions = detector.feature_contributions(X.iloc[top.index])
    names = list(contributions.columns)
    described = []
    for row, values in zip(top.index, contributions.to_numpy(), strict=True):
        largest = np.argsort(-values)[:TOP_FEATURES]
        described.append(
            ", ".join(
                f"{names[j]}={_shown(X.at[X.index[row], names[j]])} ({values[j]:+.1f})"
                for j in largest
            )
        )
    top = top.drop(columns=["missing"]).assign(most_anomalous_features=described)
    return top


def _shown(value):
    if pd.isna(value):
        return "missing"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _summary(result, flagging):
    flagged = int(result["outlier"].sum())
    return f"{flagged} of {len(result)} rows flagged as outliers ({flagging})"


def _print_top(top):
    if len(top):
        print(TOP_HEADER)
        print(top.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def check_outputs(outputs, inputs):
    """Fail now, before any work, when an output cannot be written.

    ``outputs`` maps each option to its path (None when not given); none may
    be one of ``inputs`` (name -> path), which it would overwrite. Each path
    is opened for appending, so everything that would stop the write later
    (a missing folder, a folder's name, no permission, a read-only disk) is
    met here; a file that did not exist is removed again.
    """
    claimed = {Path(path).resolve(): name for name, path in inputs.items() if path is not None}
    for option, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        where = path.resolve()
        if where in claimed:
            raise UserError(
                f"{option} and {claimed[where]} both name {path}; give each its own file"
            )
        claimed[where] = option
        if option == "--output" and path.suffix.lower() in PARQUET_SUFFIXES:
            _require("pyarrow", f"writing {path} needs pyarrow: pip install 'skvae[parquet]'")
        if path.is_dir():
            raise UserError(f"cannot write {path} ({option}): it is a folder")
        existed = path.exists()
        try:
            with open(path, "ab"):
                pass
        except OSError as error:
            raise UserError(f"cannot write {path} ({option}): {error.strerror or error}") from error
        if not existed:
            os.remove(path)


@contextlib.contextmanager
def _writing(path, what):
    """Turn a failure to write ``path`` into one line for the user, and say
    what was written when it succeeds."""
    try:
        yield Path(path)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from error
    print(f"wrote {path} ({what})")


def write_output(result, path):
    with _writing(path, f"{len(result)} rows") as path:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            result.to_parquet(path, index=False)
        else:
            result.to_csv(path, index=False)


def _flagging(args, detector):
    if args.fdr is not None:
        n = len(detector.calibration_scores_)
        return f"Benjamini-Hochberg at FDR {args.fdr:g} on p-values from {n} calibration rows"
    return f"threshold {detector.offset_:.4g} on the score"


# ----------------------------------------------------------------- commands
def detect(args):
    if args.report is not None:
        _require("matplotlib", "--report needs matplotlib: pip install 'skvae[plot]'")
    outputs = {"--output": args.output, "--report": args.report, "--save-model": args.save_model}
    check_outputs(outputs, {"FILE": args.file})
    if args.file is None:
        frame = load_demo()
        labels = frame.pop("is_anomaly").to_numpy()
        source = "the demo data"
        id_column = args.id_column or "patient_id"
    else:
        frame = read_table(args.file, args)
        labels = None
        source = args.file
        id_column = args.id_column
    ids = _ids(frame, id_column, source)
    columns = feature_columns(frame, args.columns, {id_column}, source)
    X = model_input(frame, columns)
    detector = VAEAnomalyDetector(
        contamination=args.contamination,
        scoring=args.scoring,
        max_iter="auto" if args.max_iter is None else args.max_iter,
        trim_fraction=args.trim_fraction,
        novelty=args.novelty,
        random_state=args.random_state,
        verbose=not args.quiet,
    )
    if len(X) < 2:
        raise UserError(f"{source} has {len(X)} row; fitting a detector needs at least 2")
    try:
        detector.fit(X)
    except ValueError as error:  # TrainingDivergedError, or values fit cannot use
        raise UserError(f"cannot fit a model on {source}: {_first_line(error)}") from error
    if not args.quiet:
        print_columns(detector)
    missing = missing_columns(detector, X)
    result = score_table(detector, X, ids, missing, args.fdr)
    top = top_outliers(detector, X, result, args.top)
    print(_summary(result, _flagging(args, detector)))
    n_missing = sum(bool(names) for names in missing)
    if n_missing:
        print(
            f"{n_missing} row(s) have missing values; each is scored as completed by "
            "the model's prediction of them, on the complete rows' scale"
        )
    if args.novelty:
        print(
            "--novelty: each row of the file is its own nearest training row, so these "
            "scores look more normal than new rows' will; score new rows with skvae score"
        )
    _print_top(top)
    if labels is not None:
        _print_demo_check(labels, result, top)
    if args.output is not None:
        write_output(result, args.output)
    if args.save_model is not None:
        with _writing(args.save_model, "the fitted model, for skvae score") as path:
            detector.save(path)
    if args.report is not None:
        from ._report import write_report

        with _writing(args.report, "the HTML report") as path:
            write_report(
                path,
                detector=detector,
                X=X,
                result=result,
                top=top,
                source=source,
                left_out=[c for c in frame.columns if c not in columns and c != id_column],
                columns=detector.describe_columns(),
                flagging=_flagging(args, detector),
                labels=labels,
            )
    return 0


def score(args):
    model = Path(args.model)
    if not model.is_file():
        raise UserError(f"no such model file: {model}")
    try:
        detector = load(model)
    except ModelFileError as error:
        raise UserError(f"{model} is not a model saved by skvae: {error}") from error
    if not isinstance(detector, VAEAnomalyDetector):
        raise UserError(
            f"{model} holds a {type(detector).__name__}; skvae score needs a model "
            "saved by skvae detect --save-model"
        )
    if not hasattr(detector, "feature_names_in_"):
        raise UserError(f"{model} was fitted without column names; score it from Python")
    check_outputs({"--output": args.output}, {"MODEL": args.model, "FILE": args.file})
    frame = read_table(args.file, args)
    columns = [str(name) for name in detector.feature_names_in_]
    _check_columns(frame, columns, args.file)
    X = model_input(frame, columns)
    ids = _ids(frame, args.id_column, args.file)
    result = score_table(detector, X, ids, missing_columns(detector, X), args.fdr)
    print(_summary(result, _flagging(args, detector)))
    _print_top(top_outliers(detector, X, result, args.top))
    if args.output is not None:
        write_output(result, args.output)
    return 0


def print_columns(detector):
    """The table of how each column was read and modelled."""
    table = detector.describe_columns().drop(columns="dtype")
    table["missing"] = [f"{share:.0%}" if share == share else "?" for share in table["missing"]]
    print("Columns (how each was read, and modelled):")
    print(table.to_string(index=False))


def _print_demo_check(labels, result, top):
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(labels, -result["score"])
    hits = int(labels[top.index].sum())
    print(
        f"demo: ROC-AUC against the known anomalies {auc:.3f}; "
        f"{hits} of the top {len(top)} are known anomalies"
    )


def _require(package, message):
    try:
        __import__(package)
    except ImportError as error:
        raise UserError(message) from error


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _warn(message):
    print(f"skvae: warning: {message}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # Library warnings (a ConvergenceWarning, say) as one line, not file:line,
    # naming the option rather than the Python parameter.
    text = str(message).replace("increase max_iter", "raise --max-iter")
    _warn(text.replace("; declare a column's kind in column_types to model it", ""))


def main(argv=None):
    args = _parser().parse_args(argv)
    command = detect if args.command == "detect" else score
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        if args.command == "detect" and not args.quiet:
            # The column table printed after the fit says which text was read as what.
            warnings.filterwarnings("ignore", category=TypingNote)
        try:
            return command(args)
        except UserError as error:
            print(f"skvae: error: {error}", file=sys.stderr)
            return USAGE_ERROR
        except KeyboardInterrupt:
            # Ctrl-C while training already stops fit with the best weights;
            # anywhere else it ends the command quietly, as shells expect.
            print("skvae: interrupted", file=sys.stderr)
            return 130

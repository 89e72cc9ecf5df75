"""Command line: ``skvae detect`` finds the outliers of a table, ``skvae score``
scores new rows with a saved model.

Built on the public API only. User mistakes (a missing or unreadable file, no
numeric column, a file that is not a model) end with one line on stderr and
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import csv
import gzip
import lzma
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from ._anomaly import VAEAnomalyDetector
from ._load import load
from ._persistence import ModelFileError
from .conformal import benjamini_hochberg
from .datasets import load_demo

PARQUET_SUFFIXES = {".parquet", ".pq"}
# How many features the outlier table names per row.
TOP_FEATURES = 3
TOP_HEADER = "Top outliers, with each one's largest feature contributions (feature=value (+c)):"
# A text column with more distinct values than this, and than half its rows,
# is taken for an identifier or free text and left out.
MAX_DISTINCT_TEXT = 20
# How much of a CSV file is read to guess its separator.
SNIFF_CHARS = 65536
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


_contamination = _option_type(
    lambda text: text if text == "auto" else float(text),
    lambda value: value == "auto" or 0.0 < value <= 0.5,
    "'auto' or a number in (0, 0.5]",
)
_fdr = _option_type(float, lambda value: 0.0 < value < 1.0, "a number in (0, 1)")
_positive_int = _option_type(int, lambda value: value >= 1, "a positive integer")
_count = _option_type(int, lambda value: value >= 0, "a whole number, 0 or more")


def _add_output_options(parser, flagging):
    """Options both commands take; ``--fdr`` goes into the ``flagging`` group."""
    parser.add_argument(
        "--id-column", metavar="COL", help="column copied to the output as the row id"
    )
    parser.add_argument(
        "--output", metavar="PATH", help="write every row's score to this CSV (or .parquet)"
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _parser():
    parser = argparse.ArgumentParser(
        prog="skvae", description="Find the strange rows of a table with a variational autoencoder."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{detect,score}")

    detect = commands.add_parser(
        "detect",
        help="fit a detector on a table and flag its outliers",
        description="Fit a VAE outlier detector on FILE and score every row of it.",
    )
    detect.add_argument(
        "file", nargs="?", metavar="FILE", help="CSV or Parquet file; the built-in demo if omitted"
    )
    flagging = detect.add_mutually_exclusive_group()
    flagging.add_argument(
        "--contamination",
        type=_contamination,
        default=0.05,
        help="share of rows to flag, or 'auto' for Tukey's fence on the scores (default 0.05)",
    )
    detect.add_argument("--scoring", choices=["elbo", "iwae", "reconstruction"], default="elbo")
    detect.add_argument(
        "--columns",
        action="append",
        metavar="A,B,...",
        help="columns to use, comma-separated (repeatable); default: all but the id column",
    )
    detect.add_argument("--report", metavar="PATH", help="write an HTML report here")
    detect.add_argument(
        "--save-model", metavar="PATH", help="save the fitted model (for skvae score)"
    )
    detect.add_argument("--random-state", type=int, default=0)
    detect.add_argument("--max-iter", type=_positive_int, default=200, help="epochs at most")
    _add_output_options(detect, flagging)

    score = commands.add_parser(
        "score",
        help="score a table with a model saved by skvae detect --save-model",
        description="Score every row of FILE with the model in MODEL.",
    )
    score.add_argument("model", metavar="MODEL", help="model file written by --save-model")
    score.add_argument("file", metavar="FILE", help="CSV or Parquet file")
    _add_output_options(score, score)
    return parser


# -------------------------------------------------------------------- input
def read_table(path):
    """A CSV or Parquet file as a DataFrame, or a UserError saying why not."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a CSV or Parquet file")
    parquet = path.suffix.lower() in PARQUET_SUFFIXES
    try:
        frame = pd.read_parquet(path) if parquet else _read_csv(path)
    except ImportError as error:
        raise UserError(
            f"reading Parquet needs pyarrow: pip install 'skvae[parquet]' ({error})"
        ) from error
    except (OSError, ValueError, pd.errors.EmptyDataError) as error:
        kind = "Parquet" if parquet else "CSV"
        raise UserError(f"cannot read {path} as {kind}: {_first_line(error)}") from error
    if len(frame) == 0:
        raise UserError(f"{path} has no rows")
    frame.columns = [str(column) for column in frame.columns]
    return frame


def _read_csv(path):
    """``pd.read_csv``, or with the file's own separator (``;``, tab, ``|``,
    and decimal commas with ``;``) when a comma finds only one column."""
    frame = pd.read_csv(path)
    if frame.shape[1] == 1:
        separator = _sniff_separator(path)
        if separator != ",":
            frame = pd.read_csv(path, sep=separator)
        if separator == ";":
            # Semicolon files often write decimals with a comma (1,5).
            comma_decimals = pd.read_csv(path, sep=separator, decimal=",")
            if _n_numeric(comma_decimals) > _n_numeric(frame):
                frame = comma_decimals
    return frame


def _n_numeric(frame):
    return sum(ptypes.is_numeric_dtype(dtype) for dtype in frame.dtypes)


def _sniff_separator(path):
    suffix = path.suffix.lower()
    if suffix in {".zip", ".zst", ".tar"}:
        return ","  # archives pandas opens itself: no guessing from raw bytes
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)
    try:
        with opener(path, "rt", errors="replace") as handle:
            sample = handle.read(SNIFF_CHARS)
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except (OSError, csv.Error):
        return ","


def _check_columns(frame, names, source):
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise UserError(
            f"{source} has no column {', '.join(map(repr, missing))}; "
            f"its columns are {', '.join(frame.columns)}"
        )


def _modelled(series):
    """Whether skvae can model the column: numbers, yes/no, or categories."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or ptypes.is_bool_dtype(dtype):
        return True
    if ptypes.is_numeric_dtype(dtype):
        return not ptypes.is_complex_dtype(dtype)
    return ptypes.is_object_dtype(dtype) or ptypes.is_string_dtype(dtype)


def _looks_like_identifier(series):
    """Text where most values differ (names, ids, free text, dates as text):
    as categories they would make the model learn one softmax class per row."""
    if ptypes.is_numeric_dtype(series.dtype) or ptypes.is_bool_dtype(series.dtype):
        return False
    observed = series.dropna()
    distinct = observed.nunique()
    return distinct > MAX_DISTINCT_TEXT and distinct > len(observed) / 2


def feature_columns(frame, columns, exclude, source):
    """The columns to model, with a warning naming those left out and why."""
    if columns:
        wanted = [name.strip() for group in columns for name in group.split(",") if name.strip()]
        _check_columns(frame, wanted, source)
    else:
        wanted = [name for name in frame.columns if name not in exclude]
    reasons = {
        "no values": [name for name in wanted if frame[name].isna().all()],
        "a type skvae cannot model (convert it to numbers or text)": [
            name for name in wanted if not _modelled(frame[name])
        ],
        "text with mostly distinct values, like an identifier": [
            name
            for name in wanted
            if _modelled(frame[name]) and _looks_like_identifier(frame[name])
        ],
    }
    left_out = set()
    for reason, names in reasons.items():
        names = [name for name in names if name not in left_out]
        if names:
            _warn(f"left out column(s) {', '.join(names)}: {reason}")
        left_out.update(names)
    kept = [name for name in wanted if name not in left_out]
    if not kept:
        raise UserError(f"{source} has no column to score")
    return kept


def model_input(frame, columns):
    """``frame[columns]`` with infinite numbers as missing values, and per row
    the comma-joined names of its missing columns."""
    X = frame[columns].copy()
    for name in columns:
        if ptypes.is_float_dtype(X[name].dtype):
            X[name] = X[name].replace([np.inf, -np.inf], np.nan)
    names = np.array(columns, dtype=object)
    missing = [",".join(names[row]) for row in X.isna().to_numpy()]
    return X, missing


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
        pvalues = detector.pvalues(X)
    except ValueError as error:  # rows too far from the training data to evaluate
        raise UserError(_first_line(error)) from error
    if fdr is None:
        outlier = scores < detector.offset_
    else:
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
    contributions = np.asarray(detector.feature_contributions(X.iloc[top.index]))
    names = list(X.columns)
    described = []
    for row, values in zip(top.index, contributions, strict=True):
        largest = np.argsort(-values)[:TOP_FEATURES]
        described.append(
            ", ".join(f"{names[j]}={_shown(X.iat[row, j])} ({values[j]:+.1f})" for j in largest)
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


@contextlib.contextmanager
def _writing(path):
    """Turn a failure to write ``path`` into one line for the user."""
    try:
        yield Path(path)
    except ImportError as error:
        raise UserError(f"writing {path} needs pyarrow: pip install 'skvae[parquet]'") from error
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from error


def write_output(result, path):
    with _writing(path) as path:
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
        _require_matplotlib()
    if args.file is None:
        frame = load_demo()
        labels = frame.pop("is_anomaly").to_numpy()
        source = "the demo data"
        id_column = args.id_column or "patient_id"
    else:
        frame = read_table(args.file)
        labels = None
        source = args.file
        id_column = args.id_column
    ids = _ids(frame, id_column, source)
    columns = feature_columns(frame, args.columns, {id_column}, source)
    X, missing = model_input(frame, columns)
    detector = VAEAnomalyDetector(
        contamination=args.contamination,
        scoring=args.scoring,
        max_iter=args.max_iter,
        random_state=args.random_state,
        verbose=not args.quiet,
    )
    if len(X) < 2:
        raise UserError(f"{source} has {len(X)} row; fitting a detector needs at least 2")
    try:
        detector.fit(X)
    except ValueError as error:  # TrainingDivergedError, or values fit cannot use
        raise UserError(f"cannot fit a model on {source}: {_first_line(error)}") from error
    result = score_table(detector, X, ids, missing, args.fdr)
    top = top_outliers(detector, X, result, args.top)
    print(_summary(result, _flagging(args, detector)))
    n_missing = sum(bool(names) for names in missing)
    if n_missing:
        print(f"{n_missing} row(s) have missing values; they are scored on the values they have")
    _print_top(top)
    if labels is not None:
        _print_demo_check(labels, result, top)
    if args.output is not None:
        write_output(result, args.output)
    if args.save_model is not None:
        with _writing(args.save_model) as path:
            detector.save(path)
    if args.report is not None:
        from ._report import write_report

        with _writing(args.report) as path:
            write_report(
                path,
                detector=detector,
                X=X,
                result=result,
                top=top,
                source=source,
                left_out=[c for c in frame.columns if c not in columns and c != id_column],
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
    frame = read_table(args.file)
    columns = [str(name) for name in detector.feature_names_in_]
    _check_columns(frame, columns, args.file)
    X, missing = model_input(frame, columns)
    ids = _ids(frame, args.id_column, args.file)
    result = score_table(detector, X, ids, missing, args.fdr)
    print(_summary(result, _flagging(args, detector)))
    _print_top(top_outliers(detector, X, result, args.top))
    if args.output is not None:
        write_output(result, args.output)
    return 0


def _print_demo_check(labels, result, top):
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(labels, -result["score"])
    hits = int(labels[top.index].sum())
    print(
        f"demo: ROC-AUC against the known anomalies {auc:.3f}; "
        f"{hits} of the top {len(top)} are known anomalies"
    )


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise UserError("--report needs matplotlib: pip install 'skvae[plot]'") from error


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _warn(message):
    print(f"skvae: warning: {message}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # Library warnings (a ConvergenceWarning, say) as one line, not file:line,
    # naming the option rather than the Python parameter.
    _warn(str(message).replace("increase max_iter", "raise --max-iter"))


def main(argv=None):
    args = _parser().parse_args(argv)
    command = detect if args.command == "detect" else score
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
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

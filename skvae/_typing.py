"""How each column of a user's table is read and modelled: skvae's dtype rules, in one place.

The estimators (when a DataFrame goes into ``fit``) and the command line both
type columns here. For every column of a DataFrame :func:`read_columns`
decides a *reading* (how raw values become the numbers the network sees) and
the observation model of each model column the reading gives:

- numbers, booleans and categories are used as they are (an integer column
  of 0 and 1, or a column of booleans, is Bernoulli);
- text that is numbers in disguise (``"3,750"``, ``"$1,658.08"``,
  ``"€ 1.234,50"``, ``"12%"``, ``" 7 "``, ``"(1,234)"``) is parsed with one
  rule learned in ``fit`` (thousands and decimal separators, the currency
  symbols and percent sign it saw) and stored, so that new rows are parsed
  the same way; a value that rule cannot read at scoring time is a
  ValueError naming the column and the value, never a guess;
- dates and datetimes (``datetime64`` columns, or text in one date format)
  become the number of days since 1970-01-01 (Gaussian), plus the day of the
  week when the column spans at least two weeks and the hour when the times
  vary (categorical): never a category per date;
- durations (``timedelta64``) become seconds;
- identifiers (an integer column that is a sequence, one value per row; text
  with mostly distinct values, such as ``"C-00123"`` codes or names) and
  columns with no values are left out, with a warning naming them;
- a categorical column keeps its ``MAX_LEVELS`` most frequent levels (ties
  in sorted order); the rarer ones, and levels first seen at scoring time,
  share one ``"(other)"`` level, so a column with thousands of levels costs
  no more to fit than one with ``MAX_LEVELS``.

What ``column_types`` declares always wins over these rules.

A reading is a dict of plain values (JSON-able, stored in model files); the
plain "as it is" reading is ``None``. numpy and pandas only (no torch); the
warnings look up where scikit-learn lives, to point past its frames.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from ._warnings import caller_stacklevel

# Observation models of model columns, and what column_types may declare.
MODEL_KINDS = ("gaussian", "bernoulli", "categorical")
DECLARABLE_KINDS = (*MODEL_KINDS, "datetime", "ignore")
# Most frequent levels a categorical column keeps; the rest share OTHER.
MAX_LEVELS = 50
OTHER = "(other)"
# Text with more distinct values than this, and than half its rows, is
# taken for an identifier or free text.
MAX_DISTINCT_TEXT = 20
# An integer column needs this many rows before it can be called a sequence id.
MIN_ID_ROWS = 20
# Text meaning "no value" in number and date columns.
MISSING_TEXT = frozenset({"", "-", "--", "?", "n/a", "na", "nan", "null", "none", "#n/a"})
CURRENCY_SYMBOLS = "$€£¥₹"
# (thousands, decimal) separators tried in turn; the first that reads every
# value wins, so "3,750" is 3750 while "1,5" (not a thousands group) is 1.5.
SEPARATORS = (
    (",", "."),
    (".", ","),
    ("\u00a0", ","),
    (" ", ","),
    ("\u00a0", "."),
    (" ", "."),
    ("'", "."),
)
EPOCH = pd.Timestamp("1970-01-01")
# What a text column may hold (lists, dicts and other objects it may not).
SCALARS = (str, int, float, bool, np.generic)
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
# Date parts: the categories of each and how to get its codes.
DATE_PARTS = {
    "weekday": (WEEKDAYS, lambda times: times.dt.day_of_week),
    "hour": (list(range(24)), lambda times: times.dt.hour),
}
# The day of the week is only worth a column once a column spans two weeks.
MIN_DAYS_FOR_WEEKDAY = 14


class ModelColumn:
    """One column the network sees: observation model, categories, order."""

    __slots__ = ("kind", "categories", "ordered")

    def __init__(self, kind, categories=None, ordered=False):
        self.kind, self.categories, self.ordered = kind, categories, ordered


# ------------------------------------------------------------- the decision
def read_columns(columns, column_types, default_kind):
    """Each column's reading and model columns, and one warning for those left out.

    ``columns`` are (name, Series) pairs of a DataFrame; ``column_types``
    maps names (or positions) to declared kinds. Returns a list with, per
    column, ``(reading, [ModelColumn, ...])``.
    """
    result, left_out, retyped = [], [], []
    for position, (name, series) in enumerate(columns):
        key = name if name in column_types else position if position in column_types else None
        declared = column_types[key] if key is not None else None
        reading, models = _read_column(name, series, declared, default_kind)
        result.append((reading, models))
        if reading is not None and declared is None:
            if reading["read"] == "ignore":
                left_out.append(f"{name} ({reading['reason']})")
            elif reading["read"] == "text number" or reading.get("format") is not None:
                retyped.append(f"{name} ({describe_reading(reading)})")
    if left_out:
        warn(
            f"left out column(s) {'; '.join(left_out)}; declare a column's kind in "
            "column_types to model it"
        )
    if retyped:
        warn(f"read text column(s) {'; '.join(retyped)}", TypingNote)
    return result


class TypingNote(UserWarning):
    """A column of text was read as numbers or dates (see describe_columns)."""


def _read_column(name, series, declared, default_kind):
    dtype = series.dtype
    if declared == "ignore":
        return _ignore("declared 'ignore' in column_types"), []
    if declared == "categorical":
        return _categories(series, max_levels=None)
    if declared == "datetime":
        reading = _date_reading(series, parts=True)
        if reading is None:
            example = _observed(series).iloc[0] if _observed(series).size else None
            raise ValueError(
                f"column_types declares column {name!r} 'datetime', but its values do not "
                f"read as dates in one format (e.g. {example!r})."
            )
        return reading
    if declared is not None:  # gaussian or bernoulli
        if ptypes.is_datetime64_any_dtype(dtype):
            return _date_reading(series, parts=False)
        if ptypes.is_timedelta64_dtype(dtype):
            return {"read": "duration"}, [ModelColumn(declared)]
        if _is_text(dtype):
            rule = _number_rule(series)
            if rule is not None:
                return rule, [ModelColumn(declared)]
        return None, [ModelColumn(declared)]

    observed = _observed(series)
    if observed.size == 0:
        return _ignore("no values"), []
    if isinstance(dtype, pd.CategoricalDtype):
        return _categories(series)
    if ptypes.is_bool_dtype(dtype):
        return None, [ModelColumn("bernoulli")]
    if ptypes.is_datetime64_any_dtype(dtype):
        return _date_reading(series, parts=True)
    if ptypes.is_timedelta64_dtype(dtype):
        return {"read": "duration"}, [ModelColumn(default_kind)]
    if ptypes.is_numeric_dtype(dtype) and not ptypes.is_complex_dtype(dtype):
        values = observed.to_numpy()
        if ptypes.is_integer_dtype(dtype):
            if _is_binary(values):
                return None, [ModelColumn("bernoulli")]
            if _is_sequence(values):
                return _ignore("integer sequence, one value per row: an identifier"), []
        return None, [ModelColumn(default_kind)]
    if _is_text(dtype) and _all_instances(observed.to_numpy(), SCALARS):
        values = observed.to_numpy()
        if ptypes.is_object_dtype(dtype) and _all_instances(values, (bool, np.bool_)):
            return None, [ModelColumn("bernoulli")]  # a bool column with missing values
        if ptypes.is_object_dtype(dtype) and _all_real_numbers(values):
            return None, [ModelColumn(default_kind)]
        rule = _number_rule(series)
        if rule is not None:
            return rule, [ModelColumn(default_kind)]
        dates = _date_reading(series, parts=True)
        if dates is not None:
            return dates
        distinct = observed.nunique()
        if distinct > MAX_DISTINCT_TEXT and distinct > observed.size / 2:
            return _ignore(
                f"text with {distinct} distinct values in {observed.size} rows: "
                "an identifier or free text"
            ), []
        return _categories(series)
    return _ignore(f"a type skvae cannot model ({dtype}); convert it to numbers or text"), []


def _ignore(reason):
    return {"read": "ignore", "reason": reason}


def _is_text(dtype):
    return ptypes.is_object_dtype(dtype) or ptypes.is_string_dtype(dtype)


def _observed(series):
    return series[~pd.isna(series)]


def _is_binary(values):
    return len(values) > 0 and np.isin(np.asarray(values, dtype=object), [0, 1]).all()


def _all_instances(values, types):
    return len(values) > 0 and all(isinstance(v, types) for v in values)


def _all_real_numbers(values):
    return _all_instances(values, (int, float, np.integer, np.floating)) and not any(
        isinstance(v, (bool, np.bool_)) for v in values
    )


def _is_sequence(values):
    """Distinct integers that fill a range, one per row: 1..n, 1001..1000+n."""
    n = len(values)
    if n < MIN_ID_ROWS:
        return False
    values = np.asarray(values, dtype=np.int64)
    return int(values.max()) - int(values.min()) + 1 == n and np.unique(values).size == n


def python_value(value):
    """A numpy scalar as the Python scalar it holds (so schemas are JSON-able)."""
    return value.item() if isinstance(value, np.generic) else value


def sorted_categories(values):
    unique = [python_value(v) for v in pd.unique(values)]
    try:
        return sorted(unique)
    except TypeError:  # mixed types, e.g. 1 and "a": keep first-seen order
        return unique


# --------------------------------------------------------------- categories
def _categories(series, max_levels=MAX_LEVELS):
    """A categorical column: its levels, capped at ``max_levels`` plus OTHER
    (None: every level, for a column declared categorical)."""
    max_levels = max_levels or np.inf
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = [python_value(v) for v in dtype.categories]
        ordered = bool(dtype.ordered)
        if len(categories) > max_levels:
            counts = series.value_counts(sort=False)
            counts.index = [python_value(v) for v in counts.index]
            return _grouped(counts.reindex(categories).fillna(0))
    else:
        categories = sorted_categories(_observed(series).to_numpy())
        ordered = False
        if len(categories) > max_levels:
            return _grouped(_observed(series).astype(object).value_counts(sort=False))
    return None, [ModelColumn("categorical", categories, ordered)]


def _grouped(counts):
    """The MAX_LEVELS most frequent levels (ties: sorted order) and OTHER."""
    levels = sorted_categories(counts.index.to_numpy())
    counts = counts.reindex(pd.Index(levels, dtype=object)).to_numpy()
    keep = np.argsort(-counts, kind="stable")[:MAX_LEVELS]
    kept = [levels[i] for i in sorted(keep)]
    reading = {"read": "category", "levels": len(levels)}
    return reading, [ModelColumn("categorical", [*kept, OTHER])]


# ------------------------------------------------------------- text numbers
def _number_pattern(thousands, decimal, currencies):
    t, d = re.escape(thousands), re.escape(decimal)
    number = rf"\d{{1,3}}(?:{t}\d{{3}})+(?:{d}\d*)?|\d+(?:{d}\d*)?|{d}\d+"
    symbol = f"[{re.escape(currencies)}]" if currencies else "(?!)"
    sign = "[-+\u2212]"
    return (
        rf"^\s*(?P<open>\()?\s*(?P<sign>{sign})?\s*(?P<pre>{symbol})?\s*(?P<sign2>{sign})?\s*"
        rf"(?P<number>{number})\s*(?P<post>{symbol})?\s*(?P<percent>%)?\s*(?P<close>\))?\s*$"
    )


def _text_values(series):
    """The distinct observed values as stripped text, without the missing-value words."""
    unique = pd.Series(pd.unique(_observed(series).astype(str).str.strip()), dtype=object)
    return unique[~unique.str.lower().isin(MISSING_TEXT)]


def _match_numbers(text, rule):
    """Parsed numbers of ``text`` (a Series of str) and where the rule failed."""
    pattern = _number_pattern(rule["thousands"], rule["decimal"], rule["currency"])
    parts = text.str.extract(pattern)
    failed = parts["number"].isna() | (parts["open"].isna() != parts["close"].isna())
    if not rule["percent"]:
        failed |= parts["percent"].notna()
    number = parts["number"].fillna("0").str.replace(rule["thousands"], "", regex=False)
    values = number.str.replace(rule["decimal"], ".", regex=False).astype(np.float64)
    negative = parts["open"].notna() | parts["sign"].isin(["-", "\u2212"])
    negative |= parts["sign2"].isin(["-", "\u2212"])
    values = np.where(negative, -values, values)
    return values, failed.to_numpy(), parts


def _number_rule(series):
    """The reading rule under which every value of a text column is a
    number, or None. Codes with leading zeros ("02134") are not numbers."""
    text = _text_values(series)
    if text.empty or not text.str.contains(r"\d", regex=True).all():
        return None
    for thousands, decimal in SEPARATORS:
        rule = {
            "read": "text number",
            "thousands": thousands,
            "decimal": decimal,
            "currency": CURRENCY_SYMBOLS,
            "percent": True,
        }
        _, failed, parts = _match_numbers(text, rule)
        if failed.any():
            continue
        if parts["number"].str.match(r"0\d").any():
            return None
        seen = set(parts["pre"].dropna()) | set(parts["post"].dropna())
        rule["currency"] = "".join(sorted(seen))
        rule["percent"] = bool(parts["percent"].notna().any())
        rule["thousands_seen"] = bool(parts["number"].str.contains(thousands, regex=False).any())
        rule["negative_parentheses"] = bool(parts["open"].notna().any())
        return rule
    return None


def parse_numbers(series, rule, label):
    """A text-number column as float64 under ``rule``; ValueError naming the
    value for text the rule does not read."""
    missing = pd.isna(series).to_numpy()
    text = series.astype(object).where(~missing, "").astype(str).str.strip()
    blank = text.str.lower().isin(MISSING_TEXT).to_numpy()
    # Parse each distinct value once: columns repeat their values.
    codes, unique = pd.factorize(text)
    values, failed, _ = _match_numbers(pd.Series(unique, dtype=object), rule)
    bad = failed[codes] & ~blank
    if bad.any():
        example = text.to_numpy()[np.flatnonzero(bad)[0]]
        raise ValueError(
            f"Column {label} holds {example!r} ({int(bad.sum())} value(s) like it), which "
            f"does not read as a number the way fit read this column "
            f"({describe_reading(rule)}); correct it or leave it empty (a missing value)."
        )
    out = values[codes].astype(np.float64)
    out[blank] = np.nan
    return out


# -------------------------------------------------------------------- dates
def _date_format(text):
    """One format that reads every value of ``text``, or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pandas.tseries.api import guess_datetime_format  # noqa: PLC0415

        candidates = []
        for dayfirst in (False, True):
            guess = guess_datetime_format(text.iloc[0], dayfirst=dayfirst)
            if guess is not None and guess not in candidates:
                candidates.append(guess)
        for candidate in candidates:
            # A year alone ("2014") is a number, not a date.
            if not re.search("%[mbBd]", candidate):
                continue
            parsed = pd.to_datetime(text, format=candidate, errors="coerce", utc=True)
            if not parsed.isna().any():
                return candidate
    return None


def _date_reading(series, parts):
    """A date column's reading (days since 1970 and its parts), or None when
    the column is text that does not read as dates in one format."""
    if ptypes.is_datetime64_any_dtype(series.dtype):
        date_format = None
    else:
        text = _text_values(series)
        if text.empty or not text.str.contains(r"\d", regex=True).all():
            return None
        date_format = _date_format(text)
        if date_format is None:
            return None
    reading = {"read": "date", "format": date_format, "parts": []}
    times = _times(series, reading, "")
    observed = times.dropna()
    if parts and observed.size:
        if observed.dt.normalize().nunique() >= MIN_DAYS_FOR_WEEKDAY:
            reading["parts"].append("weekday")
        if observed.dt.hour.nunique() > 1:
            reading["parts"].append("hour")
    models = [ModelColumn("gaussian")]
    models += [ModelColumn("categorical", list(DATE_PARTS[part][0])) for part in reading["parts"]]
    return reading, models


def _times(series, reading, label):
    """A date column as UTC-naive datetimes (NaT where missing)."""
    if reading["format"] is None:
        if not ptypes.is_datetime64_any_dtype(series.dtype):
            try:
                series = pd.to_datetime(series)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"Column {label} holds values that are not dates ({error})."
                ) from None
        times = series
    else:
        text = series.astype(object).where(~pd.isna(series), "").astype(str).str.strip()
        blank = text.str.lower().isin(MISSING_TEXT)
        times = pd.to_datetime(
            text.where(~blank), format=reading["format"], errors="coerce", utc=True
        )
        bad = times.isna() & ~blank
        if bad.any():
            raise ValueError(
                f"Column {label} holds {text[bad].iloc[0]!r} ({int(bad.sum())} value(s) like "
                f"it), which does not read as a date in the format fit read this column in "
                f"({reading['format']}); correct it or leave it empty (a missing value)."
            )
    times = pd.Series(times)
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times


def encode_dates(series, reading, label):
    """Days since 1970-01-01, then the codes of each date part."""
    times = _times(series, reading, label)
    missing = times.isna().to_numpy()
    days = (times - EPOCH).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan) / 86400
    columns = [days]
    for part in reading["parts"]:
        codes = DATE_PARTS[part][1](times).to_numpy(dtype=np.float64, na_value=np.nan)
        codes[missing] = np.nan
        columns.append(codes)
    return columns


def decode_dates(days, reading):
    """Days back into datetimes (text in the column's format if it was text)."""
    times = EPOCH + pd.to_timedelta(np.round(days * 86400e3), unit="ms")
    if reading["format"] is None:
        return times
    return np.asarray(
        pd.Series(times).dt.strftime(reading["format"].replace("%z", "")), dtype=object
    )


# ----------------------------------------------------------------- readings
def n_model_columns(reading):
    if reading is None:
        return 1
    if reading["read"] == "ignore":
        return 0
    if reading["read"] == "date":
        return 1 + len(reading["parts"])
    return 1


def model_column_names(name, reading):
    if reading is not None and reading["read"] == "date":
        return [name, *(f"{name}:{part}" for part in reading["parts"])]
    return [name] * n_model_columns(reading)


def check_reading(reading):
    """ValueError unless ``reading`` is one that read_columns writes."""
    if reading is None:
        return
    if not isinstance(reading, dict) or not isinstance(reading.get("read"), str):
        raise ValueError(f"bad column reading {reading!r:.200}")
    expected = {
        "ignore": {"read", "reason"},
        "duration": {"read"},
        "category": {"read", "levels"},
        "date": {"read", "format", "parts"},
        "text number": {
            "read",
            "thousands",
            "decimal",
            "currency",
            "percent",
            "thousands_seen",
            "negative_parentheses",
        },
    }.get(reading["read"])
    if expected is None or set(reading) != expected:
        raise ValueError(f"bad column reading {reading!r:.200}")
    if reading["read"] == "date" and (
        not isinstance(reading["parts"], list) or not set(reading["parts"]) <= set(DATE_PARTS)
    ):
        raise ValueError(f"bad date parts {reading['parts']!r:.100}")
    if reading["read"] == "text number" and not all(
        isinstance(reading[key], str) for key in ("thousands", "decimal", "currency")
    ):
        raise ValueError(f"bad number rule {reading!r:.200}")


def describe_reading(reading, dtype=None, kind=None, categories=None):
    """How a column was read, in words: "text -> number (thousands ',')"."""
    if reading is None:
        if kind == "categorical":
            return f"category ({len(categories)} levels)"
        if kind == "bernoulli":
            return "yes/no"
        return "number"
    read = reading["read"]
    if read == "text number":
        details = []
        if reading["thousands_seen"]:
            details.append(f"thousands {reading['thousands']!r}")
        if reading["decimal"] != ".":
            details.append(f"decimal {reading['decimal']!r}")
        if reading["currency"]:
            details.append(f"currency {', '.join(map(repr, reading['currency']))}")
        if reading["percent"]:
            details.append("percent sign")
        if reading["negative_parentheses"]:
            details.append("(x) negative")
        return "text -> number" + (f" ({', '.join(details)})" if details else "")
    if read == "date":
        source = "datetime" if reading["format"] is None else f"text -> date ({reading['format']})"
        parts = f" + {', '.join(reading['parts'])}" if reading["parts"] else ""
        return f"{source} -> days since 1970{parts}"
    if read == "duration":
        return "duration -> seconds"
    if read == "category":
        return f"category ({reading['levels']} levels, the {MAX_LEVELS} most frequent kept)"
    return ""  # left out: the table says why


# ----------------------------------------------------------------- warnings
def warn(message, category=UserWarning):
    """Warn at the first caller outside skvae and scikit-learn."""
    warnings.warn(message, category, stacklevel=caller_stacklevel())


def read_array_column(series, kind):
    """A column of an array: no typing, ``kind`` as declared or by default."""
    if kind == "categorical":
        return _categories(series, max_levels=None)
    return None, [ModelColumn(kind)]

"""Column schema and encoding: from a table to the rows the network reads, and back.

A fitted :class:`ColumnSchema` knows, for every column of the table, how it
was read (see :mod:`skvae._typing`, which owns the dtype rules) and, for
every *model column* the network sees, its observation model
(``"gaussian"``, ``"bernoulli"`` or ``"categorical"``), the categories of a
categorical column and whether the encoder gets a missing-value indicator
for it. A column is usually one model column; a date gives one per date
part, an identifier none. ``encode`` turns a DataFrame or array into a float
matrix with one column per model column: the value of a numeric column, the
code of a category (``UNSEEN_CODE`` for a category not seen in training)
and NaN where a value is missing. ``decode`` turns such a matrix back into a
table of the original columns.

The table work is numpy and pandas; the kind names, ``UNSEEN_CODE`` and the
``ColumnLayout`` the schema hands to the network come from the torch module
``_network`` (so importing this module imports torch).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from . import _typing
from ._network import KINDS, UNSEEN_CODE, ColumnLayout
from ._observations import OBSERVATION_MODELS
from ._typing import DECLARABLE_KINDS, MODEL_KINDS, read_columns


def is_frame(X):
    return isinstance(X, pd.DataFrame)


def _check_column_types(column_types, names, n_columns):
    """Every key of ``column_types`` names a column and every value a kind."""
    allowed = DECLARABLE_KINDS if names is not None else MODEL_KINDS
    for key, kind in column_types.items():
        if kind not in allowed:
            extra = (
                ""
                if names is not None or kind not in DECLARABLE_KINDS
                else (" ('datetime' and 'ignore' apply to DataFrame columns)")
            )
            raise ValueError(
                f"column_types[{key!r}] must be one of {', '.join(map(repr, allowed))}; "
                f"got {kind!r}{extra}."
            )
        known = (names is not None and key in set(names)) or (
            isinstance(key, (int, np.integer))
            and not isinstance(key, bool)
            and 0 <= key < n_columns
        )
        if not known:
            where = f"columns {list(names)}" if names is not None else f"{n_columns} columns"
            raise ValueError(f"column_types names column {key!r}, but X has {where}.")


def column_list(X):
    """The columns of ``X`` as (name or None, 1-D values) pairs."""
    if is_frame(X):
        return [(str(name), X.iloc[:, j]) for j, name in enumerate(X.columns)]
    X = np.asarray(X)
    return [(None, pd.Series(X[:, j])) for j in range(X.shape[1])]


def infer_schema(X, column_types=None, default_kind="gaussian"):
    """The schema of ``X`` (a DataFrame or a 2-D array) before it is encoded.

    A DataFrame's columns are read and typed by :mod:`skvae._typing` (which
    warns about columns it leaves out); every column of an array follows
    ``default_kind``. ``column_types`` (keyed by column name or position)
    overrides either. Missing-value indicators are decided by
    :meth:`ColumnSchema.with_masks` once the data is encoded.
    """
    columns = column_list(X)
    names = [name for name, _ in columns] if is_frame(X) else None
    column_types = dict(column_types or {})
    _check_column_types(column_types, names, len(columns))
    if is_frame(X):
        typed = read_columns(columns, column_types, default_kind)
    else:
        typed = [
            _typing.read_array_column(series, column_types.get(position, default_kind))
            for position, (_, series) in enumerate(columns)
        ]
    readings = [reading for reading, _ in typed]
    models = [model for _, column_models in typed for model in column_models]
    if not models:
        reasons = "; ".join(
            f"{name}: {reading['reason']}" for name, reading in zip(names, readings, strict=True)
        )
        raise ValueError(f"X has no column skvae can model ({reasons}).")
    return ColumnSchema(
        kinds=[model.kind for model in models],
        categories=[model.categories for model in models],
        masked=[False] * len(models),
        dtypes=[str(series.dtype) for _, series in columns] if is_frame(X) else None,
        ordered=[model.ordered for model in models],
        names=names,
        readings=readings if any(reading is not None for reading in readings) else None,
        missing=[float(pd.isna(series).mean()) for _, series in columns],
    )


@dataclass
class ColumnSchema:
    """How each column was read; each model column's observation model,
    categories and missing indicator.

    ``kinds``, ``categories``, ``masked`` and ``ordered`` hold one entry per
    model column; ``dtypes``, ``names``, ``readings`` and ``missing`` (the
    share of missing values fit saw) one per column of the table.
    ``readings`` is None when every column is used as it is. Every field is
    a list of plain Python values, so :meth:`to_dict` is JSON-able (as long
    as the categories are strings, numbers or booleans).
    """

    kinds: list
    categories: list
    masked: list
    dtypes: list | None = None
    ordered: list | None = None
    names: list | None = None
    readings: list | None = None
    # Facts about the training rows, not part of how rows are encoded: a
    # plain table's model file does not store them (files stay as they were).
    missing: list | None = dataclasses.field(default=None, compare=False)

    # ---------------------------------------------------------------- state
    def to_dict(self):
        """The schema as a dict of lists of plain values.

        ``readings`` and ``missing`` are written only for a table with a
        column not used as it is, so files of plain tables stay as they were.
        """
        state = {
            "kinds": list(self.kinds),
            "categories": [None if c is None else list(c) for c in self.categories],
            "masked": [bool(m) for m in self.masked],
            "dtypes": None if self.dtypes is None else list(self.dtypes),
            "ordered": None if self.ordered is None else [bool(o) for o in self.ordered],
            "names": None if self.names is None else list(self.names),
        }
        if self.readings is not None:
            state["readings"] = [None if r is None else dict(r) for r in self.readings]
            state["missing"] = None if self.missing is None else [float(m) for m in self.missing]
        return state

    @classmethod
    def from_dict(cls, state):
        """The schema saved by :meth:`to_dict` (by this or an earlier
        version); ValueError for anything else."""
        names = [f.name for f in fields(cls)]
        base = names[:6]
        if not isinstance(state, dict) or set(state) not in (set(base), set(names)):
            raise ValueError(f"a column schema needs the keys {base} (and readings, missing)")
        state = {"readings": None, "missing": None, **state}
        kinds = state["kinds"]
        if not isinstance(kinds, list) or not set(kinds) <= set(KINDS):
            raise ValueError(f"bad column kinds {kinds!r:.200}")
        readings = state["readings"]
        if readings is not None:
            if not isinstance(readings, list):
                raise ValueError("readings must be a list")
            for reading in readings:
                _typing.check_reading(reading)
            if sum(map(_typing.n_model_columns, readings)) != len(kinds):
                raise ValueError("the readings do not give one model column per kind")
        n = len(kinds)
        n_inputs = n if readings is None else len(readings)
        for name in names[1:]:
            value = state[name]
            size = n_inputs if name in ("dtypes", "names", "readings", "missing") else n
            if value is not None and (not isinstance(value, list) or len(value) != size):
                raise ValueError(f"{name} must be a list of {size} entries")
        for kind, categories in zip(kinds, state["categories"], strict=True):
            if (kind == "categorical") != isinstance(categories, list) or (
                categories is not None and not categories
            ):
                raise ValueError(f"bad categories {categories!r:.100} for a {kind} column")
        for name in ("masked", "ordered"):
            if state[name] is not None and not all(isinstance(v, bool) for v in state[name]):
                raise ValueError(f"{name} must hold booleans")
        for name in ("dtypes", "names"):
            if state[name] is not None and not all(isinstance(v, str) for v in state[name]):
                raise ValueError(f"{name} must hold strings")
        if state["missing"] is not None and not all(
            isinstance(v, float) and 0.0 <= v <= 1.0 for v in state["missing"]
        ):
            raise ValueError("missing must hold shares in [0, 1]")
        if state["masked"] is None or (state["dtypes"] is None) != (state["names"] is None):
            raise ValueError("masked is required, and dtypes and names go together")
        if readings is not None and state["names"] is None:
            raise ValueError("readings need column names")
        return cls(**state)

    def __reduce__(self):
        # Pickled as its JSON text where it has one: equal schemas then give
        # equal bytes, whatever objects their lists happen to share.
        try:
            return (_schema_from_json, (json.dumps(self.to_dict()),))
        except TypeError:  # categories JSON cannot hold (dates, ...)
            return (ColumnSchema.from_dict, (self.to_dict(),))

    @property
    def n_columns(self):
        """Number of model columns (the network's input width)."""
        return len(self.kinds)

    @property
    def n_inputs(self):
        """Number of columns of the table."""
        return self.n_columns if self.readings is None else len(self.readings)

    @property
    def has_categorical(self):
        return "categorical" in self.kinds

    @property
    def needs_encoding(self):
        """Whether rows need more than a cast to float: categories to code,
        text to parse, columns to leave out."""
        return self.has_categorical or self.readings is not None

    def _readings(self):
        return self.readings if self.readings is not None else [None] * self.n_columns

    @property
    def sources(self):
        """For each model column, the position of its column in the table."""
        counts = [_typing.n_model_columns(reading) for reading in self._readings()]
        return np.repeat(np.arange(len(counts)), counts)

    @property
    def model_names(self):
        """Names of the model columns (``"when:weekday"`` for a date part);
        None without column names."""
        if self.names is None:
            return None
        return [
            model_name
            for name, reading in zip(self.names, self._readings(), strict=True)
            for model_name in _typing.model_column_names(name, reading)
        ]

    def modelled(self, names):
        """The entries of ``names`` (one per column of the table) of the
        columns that are modelled, not left out."""
        return [names[i] for i in np.unique(self.sources)]

    def per_column(self, values):
        """Per-model-column ``values`` (n_rows, n_columns) summed into one
        column per modelled column of the table."""
        if self.readings is None:
            return values
        sources = self.sources
        kept = np.unique(sources)
        return np.stack([values[:, sources == i].sum(axis=1) for i in kept], axis=1)

    @property
    def layout(self):
        """What the torch module needs to know about the columns."""
        counts = tuple(len(c) if c is not None else 0 for c in self.categories)
        return ColumnLayout(tuple(self.kinds), counts, tuple(bool(m) for m in self.masked))

    def with_masks(self, encoded):
        """This schema with an indicator for every numeric model column that
        has a missing value in ``encoded`` (categorical ones need none), and
        the share of missing values of each column read from text."""
        missing = np.isnan(encoded).any(axis=0)
        masked = [bool(m) and k != "categorical" for m, k in zip(missing, self.kinds, strict=True)]
        shares = self.missing
        if self.readings is not None and encoded.shape[0]:
            # Text read as numbers or dates may hold "-" or "n/a": count them.
            shares, first = list(shares), 0
            for i, reading in enumerate(self.readings):
                if _typing.n_model_columns(reading):
                    shares[i] = float(np.isnan(encoded[:, first]).mean())
                first += _typing.n_model_columns(reading)
        return dataclasses.replace(self, masked=masked, missing=shares)

    def describe(self, moments=None):
        """One row per column of the table: how it was read and modelled,
        its share of missing values, why it was left out."""
        names = self.names or [f"x{i}" for i in range(self.n_inputs)]
        dtypes = self.dtypes or ["float64"] * self.n_inputs
        missing = self.missing
        if missing is None and moments is not None:
            # A plain table's model file keeps no shares: only "none" is known.
            missing = [0.0 if np.ndim(moments.count) == 0 else np.nan] * self.n_inputs
        rows, first = [], 0
        for i, reading in enumerate(self._readings()):
            n_models = _typing.n_model_columns(reading)
            models = range(first, first + n_models)
            first += n_models
            modelled = " + ".join(_kind_in_words(self.kinds[j], self.categories[j]) for j in models)
            rows.append(
                {
                    "column": names[i],
                    "dtype": dtypes[i],
                    "read as": _typing.describe_reading(
                        reading,
                        kind=self.kinds[models[0]] if n_models else None,
                        categories=self.categories[models[0]] if n_models else None,
                    ),
                    "modelled as": modelled or "left out",
                    "missing": np.nan if missing is None else missing[i],
                    "left out because": reading["reason"] if not n_models else "",
                }
            )
        return pd.DataFrame(rows)

    # ------------------------------------------------------------- encoding
    def encode(self, X):
        """``X`` as a float64 matrix with one column per model column:
        numeric values, category codes, NaN for missing values. ``X`` is a
        DataFrame or a 2-D array whose columns are this schema's, in order."""
        columns = column_list(X)
        n_rows = len(columns[0][1]) if columns else 0
        # Column by column, as check_array lays out a DataFrame: the same
        # layout gives bit-identical standardisation statistics.
        out = np.empty((n_rows, self.n_columns), dtype=np.float64, order="F")
        j = 0
        for i, ((name, series), reading) in enumerate(zip(columns, self._readings(), strict=True)):
            label = repr(name) if name is not None else str(i)
            for values in self._encode_column(series, reading, j, label):
                out[:, j] = values
                j += 1
        return out

    def _encode_column(self, series, reading, j, label):
        """The model columns of one column of the table, from model column ``j`` on."""
        read = None if reading is None else reading["read"]
        if read is None and self.kinds[j] == "categorical":
            return [_encode_categories(series, self.categories[j])]
        if read is None:
            return [_encode_numeric(series, label, self.kinds[j])]
        if read == "category":
            return [_encode_categories(series, self.categories[j], grouped=True)]
        if read == "text number":
            values = _typing.parse_numbers(series, reading, label)
            return [_check_numeric(values, label, self.kinds[j])]
        if read == "duration":
            seconds = pd.to_timedelta(series).dt.total_seconds()
            return [
                _check_numeric(seconds.to_numpy(np.float64, na_value=np.nan), label, "gaussian")
            ]
        if read == "date":
            return _typing.encode_dates(series, reading, label)
        return []  # left out

    def decode(self, values):
        """Rows in encoded form (numeric values, Bernoulli probabilities or
        draws, category codes) back into a table.

        A schema fitted on a DataFrame gives a DataFrame with the original
        columns, dtypes and categories (text read as numbers comes back as
        numbers, dates as dates or as text in their format, a column left
        out as None). Otherwise an ndarray: float, or object when some
        columns are categorical.
        """
        if self.dtypes is None:
            if not self.has_categorical:
                return values
            out = values.astype(object)
            for j, categories in enumerate(self.categories):
                if categories is not None:
                    out[:, j] = np.asarray(categories, dtype=object)[values[:, j].astype(int)]
            return out
        data, j = {}, 0
        for i, (name, reading) in enumerate(zip(self.names, self._readings(), strict=True)):
            data[name] = self._decode_column(j, self.dtypes[i], reading, values)
            j += _typing.n_model_columns(reading)
        return pd.DataFrame(data, columns=list(self.names))

    def _decode_column(self, j, dtype_name, reading, values):
        read = None if reading is None else reading["read"]
        if read == "ignore":
            return np.full(values.shape[0], None, dtype=object)
        column = values[:, j]
        if read == "date":
            return _typing.decode_dates(column, reading)
        if read == "duration":
            return pd.to_timedelta(column, unit="s")
        if read in ("text number", "category"):
            if read == "category":
                return np.asarray(self.categories[j], dtype=object)[column.astype(int)]
            return column
        dtype = pd.api.types.pandas_dtype(dtype_name) if dtype_name != "category" else None
        if self.kinds[j] == "categorical":
            codes = column.astype(int)
            if dtype is None:
                categorical_dtype = pd.CategoricalDtype(self.categories[j], self.ordered[j])
                return pd.Categorical.from_codes(codes, dtype=categorical_dtype)
            labels = np.asarray(self.categories[j], dtype=object)[codes]
            return pd.array(labels, dtype=dtype) if not ptypes.is_object_dtype(dtype) else labels
        if self.kinds[j] == "bernoulli" and not ptypes.is_float_dtype(dtype):
            # bool, integer 0/1 and object columns of booleans get yes/no back.
            flags = column >= 0.5
            if ptypes.is_object_dtype(dtype):
                return flags.astype(object)
            return pd.array(flags, dtype="boolean").astype(dtype)
        if ptypes.is_integer_dtype(dtype):
            info = np.iinfo(np.dtype(dtype.numpy_dtype if hasattr(dtype, "numpy_dtype") else dtype))
            return pd.array(np.clip(np.round(column), info.min, info.max)).astype(dtype)
        if ptypes.is_float_dtype(dtype):
            return pd.array(column).astype(dtype)
        return column


def _kind_in_words(kind, categories):
    return f"categorical ({len(categories)} levels)" if kind == "categorical" else kind


def _schema_from_json(text):
    return ColumnSchema.from_dict(json.loads(text))


def _encode_categories(series, categories, grouped=False):
    """Codes of the values in ``categories``; NaN where missing. A value that
    is not one of them gets ``UNSEEN_CODE``, or, when ``grouped``, the code
    of the last category (OTHER: rare levels and new ones)."""
    missing = pd.isna(series).to_numpy()
    known = pd.Index(categories[:-1] if grouped else categories, dtype=object)
    if isinstance(series.dtype, pd.CategoricalDtype):
        # Translate the column's own codes: no per-row hashing of values.
        translate = np.append(known.get_indexer(series.cat.categories.astype(object)), -1)
        codes = translate[series.cat.codes.to_numpy()]
    else:
        codes = known.get_indexer(series.astype(object))
    codes = codes.astype(np.float64)
    codes[codes < 0] = len(categories) - 1 if grouped else UNSEEN_CODE
    codes[missing] = np.nan
    return codes


def _encode_numeric(series, label, kind):
    """A numeric or boolean column as float64, NaN where missing."""
    try:
        if ptypes.is_object_dtype(series.dtype) or ptypes.is_string_dtype(series.dtype):
            values = pd.to_numeric(series.astype(object).where(~pd.isna(series), np.nan))
            values = np.asarray(values, dtype=np.float64)
        else:
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Column {label} is modelled as {kind} but holds values that are not "
            f"numbers ({error}); declare it 'categorical' in column_types."
        ) from None
    return _check_numeric(values, label, kind)


def _check_numeric(values, label, kind):
    """``values`` of a numeric column, or a ValueError for infinities or a
    Bernoulli column outside [0, 1]."""
    if np.isinf(values).any():
        raise ValueError(f"Input X contains infinity in column {label}.")
    OBSERVATION_MODELS[kind].check_support(values, label)
    return values

"""Column typing and encoding: from a table to the rows the network reads, and back.

A fitted :class:`ColumnSchema` knows, for every column, its observation model
(``"gaussian"``, ``"bernoulli"`` or ``"categorical"``), the categories of a
categorical column, whether the encoder gets a missing-value indicator for it,
and, when it was fitted on a DataFrame, the column's dtype. ``encode`` turns a
DataFrame or array into a float matrix with one column per column of the
table: the value of a numeric column, the code of a category
(``UNSEEN_CODE`` for a category not seen in training) and NaN where a value is
missing. ``decode`` turns such a matrix back into a table of the original
dtypes. numpy and pandas only: no torch, no scikit-learn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from ._network import KINDS, UNSEEN_CODE, ColumnLayout
from ._observations import OBSERVATION_MODELS


def is_frame(X):
    return isinstance(X, pd.DataFrame)


def _python_value(value):
    """A numpy scalar as the Python scalar it holds (so schemas are JSON-able)."""
    return value.item() if isinstance(value, np.generic) else value


def _sorted_categories(values):
    unique = [_python_value(v) for v in pd.unique(values)]
    try:
        return sorted(unique)
    except TypeError:  # mixed types, e.g. 1 and "a": keep first-seen order
        return unique


def _observed(column):
    return column[~pd.isna(column)]


def _is_binary(values):
    return len(values) > 0 and np.isin(np.asarray(values, dtype=object), [0, 1]).all()


def _is_bool_values(values):
    return len(values) > 0 and all(isinstance(v, (bool, np.bool_)) for v in values)


def _infer_frame_kind(series, default_kind):
    """The observation model a DataFrame column gets from its dtype."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if ptypes.is_bool_dtype(dtype):
        return "bernoulli"
    if ptypes.is_numeric_dtype(dtype) and not ptypes.is_complex_dtype(dtype):
        # An integer column holding only 0 and 1 is a yes/no column.
        if ptypes.is_integer_dtype(dtype) and _is_binary(_observed(series).to_numpy()):
            return "bernoulli"
        return default_kind
    if ptypes.is_object_dtype(dtype) or ptypes.is_string_dtype(dtype):
        observed = _observed(series).to_numpy()
        if ptypes.is_object_dtype(dtype) and _is_bool_values(observed):
            return "bernoulli"  # a bool column that holds missing values
        return "categorical"
    raise ValueError(
        f"Column {series.name!r} has dtype {dtype}, which skvae cannot model; convert it "
        "to numbers, bool or category first."
    )


def _column_key(column_types, position, name):
    for key in (name, position):
        if key is not None and key in column_types:
            return key
    return None


def _check_column_types(column_types, names, n_columns):
    """Every key of ``column_types`` names a column and every value a kind."""
    for key, kind in column_types.items():
        if kind not in KINDS:
            raise ValueError(
                f"column_types[{key!r}] must be one of {', '.join(map(repr, KINDS))}; got {kind!r}."
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

    Column kinds come from the DataFrame dtypes (arrays: ``default_kind``
    for every column), then ``column_types`` (keyed by column name or
    position) overrides them. Missing-value indicators are decided by
    :meth:`ColumnSchema.with_masks` once the data is encoded.
    """
    columns = column_list(X)
    names = [name for name, _ in columns] if is_frame(X) else None
    column_types = dict(column_types or {})
    _check_column_types(column_types, names, len(columns))
    kinds, categories, ordered = [], [], []
    for position, (name, series) in enumerate(columns):
        key = _column_key(column_types, position, name)
        if key is not None:
            kind = column_types[key]
        elif is_frame(X):
            kind = _infer_frame_kind(series, default_kind)
        else:
            kind = default_kind
        kinds.append(kind)
        dtype = series.dtype
        if kind != "categorical":
            categories.append(None)
            ordered.append(False)
        elif isinstance(dtype, pd.CategoricalDtype):
            categories.append([_python_value(v) for v in dtype.categories])
            ordered.append(bool(dtype.ordered))
        else:
            categories.append(_sorted_categories(_observed(series).to_numpy()))
            ordered.append(False)
    dtypes = [str(series.dtype) for _, series in columns] if is_frame(X) else None
    return ColumnSchema(
        kinds=kinds,
        categories=categories,
        masked=[False] * len(kinds),
        dtypes=dtypes,
        ordered=ordered,
        names=names,
    )


@dataclass
class ColumnSchema:
    """Per-column observation model, categories, missing indicators, dtypes.

    Every field is a list with one entry per column, of plain Python values,
    so :meth:`to_dict` is JSON-able (as long as the categories are strings,
    numbers or booleans).
    """

    kinds: list
    categories: list
    masked: list
    dtypes: list | None = None
    ordered: list | None = None
    names: list | None = None

    # ---------------------------------------------------------------- state
    def to_dict(self):
        """The schema as a dict of lists of plain values."""
        return {
            "kinds": list(self.kinds),
            "categories": [None if c is None else list(c) for c in self.categories],
            "masked": [bool(m) for m in self.masked],
            "dtypes": None if self.dtypes is None else list(self.dtypes),
            "ordered": None if self.ordered is None else [bool(o) for o in self.ordered],
            "names": None if self.names is None else list(self.names),
        }

    @classmethod
    def from_dict(cls, state):
        """The schema saved by :meth:`to_dict`; ValueError for anything else."""
        names = [f.name for f in fields(cls)]
        if not isinstance(state, dict) or set(state) != set(names):
            raise ValueError(f"a column schema needs the keys {names}")
        kinds = state["kinds"]
        if not isinstance(kinds, list) or not set(kinds) <= set(KINDS):
            raise ValueError(f"bad column kinds {kinds!r:.200}")
        n = len(kinds)
        for name in names[1:]:
            value = state[name]
            if value is not None and (not isinstance(value, list) or len(value) != n):
                raise ValueError(f"{name} must be a list of {n} entries")
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
        if state["masked"] is None or (state["dtypes"] is None) != (state["names"] is None):
            raise ValueError("masked is required, and dtypes and names go together")
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
        return len(self.kinds)

    @property
    def has_categorical(self):
        return "categorical" in self.kinds

    @property
    def layout(self):
        """What the torch module needs to know about the columns."""
        counts = tuple(len(c) if c is not None else 0 for c in self.categories)
        return ColumnLayout(tuple(self.kinds), counts, tuple(bool(m) for m in self.masked))

    def with_masks(self, encoded):
        """This schema with an indicator for every numeric column that has a
        missing value in ``encoded`` (categorical ones need none)."""
        missing = np.isnan(encoded).any(axis=0)
        masked = [bool(m) and k != "categorical" for m, k in zip(missing, self.kinds, strict=True)]
        return ColumnSchema(
            self.kinds, self.categories, masked, self.dtypes, self.ordered, self.names
        )

    # ------------------------------------------------------------- encoding
    def encode(self, X):
        """``X`` as a float64 matrix: numeric values, category codes, NaN for
        missing values. ``X`` is a DataFrame or a 2-D array whose columns are
        this schema's, in order."""
        columns = column_list(X)
        n_rows = len(columns[0][1]) if columns else 0
        # Column by column, as check_array lays out a DataFrame: the same
        # layout gives bit-identical standardisation statistics.
        out = np.empty((n_rows, self.n_columns), dtype=np.float64, order="F")
        for j, (name, series) in enumerate(columns):
            label = repr(name) if name is not None else str(j)
            if self.kinds[j] == "categorical":
                out[:, j] = _encode_categories(series, self.categories[j])
            else:
                out[:, j] = _encode_numeric(series, label, self.kinds[j])
        return out

    def decode(self, values):
        """Rows in encoded form (numeric values, Bernoulli probabilities or
        draws, category codes) back into a table.

        A schema fitted on a DataFrame gives a DataFrame with the original
        columns, dtypes and categories. Otherwise an ndarray: float, or
        object when some columns are categorical.
        """
        if self.dtypes is None:
            if not self.has_categorical:
                return values
            out = values.astype(object)
            for j, categories in enumerate(self.categories):
                if categories is not None:
                    out[:, j] = np.asarray(categories, dtype=object)[values[:, j].astype(int)]
            return out
        data = {name: self._decode_column(j, values[:, j]) for j, name in enumerate(self.names)}
        return pd.DataFrame(data, columns=list(self.names))

    def _decode_column(self, j, values):
        dtype = pd.api.types.pandas_dtype(self.dtypes[j]) if self.dtypes[j] != "category" else None
        if self.kinds[j] == "categorical":
            codes = values.astype(int)
            if dtype is None:
                categorical_dtype = pd.CategoricalDtype(self.categories[j], self.ordered[j])
                return pd.Categorical.from_codes(codes, dtype=categorical_dtype)
            labels = np.asarray(self.categories[j], dtype=object)[codes]
            return pd.array(labels, dtype=dtype) if not ptypes.is_object_dtype(dtype) else labels
        if self.kinds[j] == "bernoulli" and not ptypes.is_float_dtype(dtype):
            # bool, integer 0/1 and object columns of booleans get yes/no back.
            flags = values >= 0.5
            if ptypes.is_object_dtype(dtype):
                return flags.astype(object)
            return pd.array(flags, dtype="boolean").astype(dtype)
        if ptypes.is_integer_dtype(dtype):
            info = np.iinfo(np.dtype(dtype.numpy_dtype if hasattr(dtype, "numpy_dtype") else dtype))
            return pd.array(np.clip(np.round(values), info.min, info.max)).astype(dtype)
        if ptypes.is_float_dtype(dtype):
            return pd.array(values).astype(dtype)
        return values


def _schema_from_json(text):
    return ColumnSchema.from_dict(json.loads(text))


def _encode_categories(series, categories):
    """Codes of the values in ``categories``; NaN where missing and
    ``UNSEEN_CODE`` for a value that is not one of them."""
    missing = pd.isna(series).to_numpy()
    known = pd.Index(categories, dtype=object)
    if isinstance(series.dtype, pd.CategoricalDtype):
        # Translate the column's own codes: no per-row hashing of values.
        translate = np.append(known.get_indexer(series.cat.categories.astype(object)), -1)
        codes = translate[series.cat.codes.to_numpy()]
    else:
        codes = known.get_indexer(series.astype(object))
    codes = codes.astype(np.float64)
    codes[codes < 0] = UNSEEN_CODE
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
    if np.isinf(values).any():
        raise ValueError(f"Input X contains infinity in column {label}.")
    OBSERVATION_MODELS[kind].check_support(values, label)
    return values

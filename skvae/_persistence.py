"""Model files that cannot run code when loaded.

A model file is a zip archive holding ``skvae.json`` (format version,
estimator class, parameters, fitted attributes) and ``arrays/<name>.npy``
(numpy arrays, the network's weights among them) read with
``allow_pickle=False``. Nothing in it is unpickled, so a file from an
untrusted source can at worst fail to load, never execute code. Pickle and
joblib files do not have this property.

Why this format rather than the alternatives:

- ``torch.load(weights_only=True)`` still runs a (restricted) unpickler, and
  torch before 2.6 let such files execute code (CVE-2025-32434); skvae
  supports torch>=2.3.
- ``safetensors`` would be a new dependency for what numpy's ``.npy`` format
  (a JSON-like header and raw bytes) already does without one.

Which attributes are stored, and how, is declared in one place:
``FITTED_ATTRIBUTES`` maps each fitted attribute of each estimator to one of
the codecs below. This module depends on the model it stores (the network,
the column schema, the training history), never on the estimators: they
call it, handing ``load`` the classes it may build.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import zipfile
import zlib

import numpy as np
import torch

from ._adam_state import ADAM_MOMENTS
from ._columns import ColumnSchema
from ._device import resolve_device
from ._missing_reference import REFERENCE_ROWS
from ._neighbors import MAX_ROWS as NEIGHBOR_MAX_ROWS
from ._network import VAEModule
from ._preprocessing import ColumnMoments
from ._training import TrainingHistory
from ._version import __version__

FORMAT = "skvae-model"
# Bump when a file written by this code could not be read by older code.
# Version 1 stored the training record twice, in the public attributes and a
# ``_history`` beside them; version 2 stores it once (``_upgrade_v1``).
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
HEADER_NAME = "skvae.json"
ARRAY_PREFIX = "arrays/"
# Limits on what load reads, so that a file from a stranger cannot exhaust
# memory or time (README, "Saving models"). save writes a few members per
# layer; 2 GiB of float32 weights and Adam moments is a network of some 170
# million parameters, far beyond a tabular VAE. The header is parsed into
# Python objects several times its size, so it has a smaller limit.
MAX_MEMBERS = 10_000
MAX_UNCOMPRESSED_BYTES = 2**31
MAX_HEADER_BYTES = 2**25


class ModelFileError(ValueError):
    """A model file is not one skvae wrote, is damaged, or was tampered with."""


# ------------------------------------------------------------------ codecs
class _Codec:
    """How one fitted attribute is written to and read from a model file.

    ``encode`` returns a JSON-able value and may put numpy arrays into
    ``arrays`` under keys starting with ``name``; ``decode`` reverses it and
    raises ValueError or TypeError on anything it would not have written.
    ``loaded`` holds the attributes decoded before this one (the table's
    order) and ``device_``: the shapes an array may have come from them.
    """

    def __init__(self, *, nullable=False, optional=False):
        # nullable: the value may be None; optional: the attribute may be absent.
        self.nullable = nullable
        self.optional = optional

    def encode(self, name, value, arrays):
        return None if value is None else self._encode(name, value, arrays)

    def decode(self, name, stored, arrays, loaded):
        if stored is None:
            if not self.nullable:
                raise ValueError("is null")
            return None
        return self._decode(name, stored, arrays, loaded)

    def _encode(self, name, value, arrays):
        return _plain(value)

    def _decode(self, name, stored, arrays, loaded):
        raise NotImplementedError


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Int(_Codec):
    """An integer in [low, high]."""

    def __init__(self, low, high, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = low, high

    def _decode(self, name, stored, arrays, loaded):
        if not isinstance(stored, int) or isinstance(stored, bool):
            raise TypeError(f"expected an integer, got {stored!r:.100}")
        if not self.low <= stored <= self.high:
            raise ValueError(f"is {stored}, outside [{self.low}, {self.high}]")
        return stored


class Float(_Codec):
    """A number; finite unless ``infinite`` allows that infinity (a best
    value before the first epoch), never NaN."""

    def __init__(self, *, infinite=0.0, **kwargs):
        super().__init__(**kwargs)
        self.infinite = infinite

    def _decode(self, name, stored, arrays, loaded):
        if not _is_number(stored):
            raise TypeError(f"expected a number, got {stored!r:.100}")
        if not (math.isfinite(stored) or stored == self.infinite):
            raise ValueError(f"is {stored}, not a finite number")
        return float(stored)


class Floats(_Codec):
    """A list of finite floats (loss curves)."""

    def _decode(self, name, stored, arrays, loaded):
        if not isinstance(stored, list) or not all(_is_number(v) for v in stored):
            raise TypeError(f"expected a list of numbers, got {stored!r:.100}")
        if not all(math.isfinite(v) for v in stored):
            raise ValueError("holds NaN or infinite values")
        return [float(v) for v in stored]


class Strings(_Codec):
    """An object array of str (``feature_names_in_``)."""

    def _encode(self, name, value, arrays):
        return [str(v) for v in value]

    def _decode(self, name, stored, arrays, loaded):
        if not isinstance(stored, list) or not all(isinstance(v, str) for v in stored):
            raise TypeError(f"expected a list of strings, got {stored!r:.100}")
        return np.asarray(stored, dtype=object)


class _Floats64(_Codec):
    """A float64 array stored as ``.npy`` (``Array``, ``Rows``), read back
    finite unless the codec allows missing entries."""

    def _encode(self, name, value, arrays):
        arrays[name] = np.asarray(value, dtype=np.float64)
        return name

    def _read(self, name, stored, arrays, shape):
        """The stored array ``name`` of ``shape`` (None: any length)."""
        if stored != name:
            raise ValueError(f"names the array {stored!r:.100}, not {name!r}")
        return arrays.read(name, shape, np.float64)

    def _read_finite(self, name, stored, arrays, shape):
        """``_read``, for arrays that must be finite."""
        array = self._read(name, stored, arrays, shape)
        if not np.isfinite(array).all():
            raise ValueError("holds NaN or infinite values")
        return array


class Array(_Floats64):
    """A finite float64 vector, stored as ``.npy``: one value per model
    column of the stored ``column_schema_`` when ``per_feature`` (a date
    column gives several, a left-out column none), else of any non-zero length and ascending when
    ``ascending`` (sorted calibration scores)."""

    def __init__(self, *, per_feature=False, ascending=False, **kwargs):
        super().__init__(**kwargs)
        self.per_feature = per_feature
        self.ascending = ascending

    def _decode(self, name, stored, arrays, loaded):
        shape = (loaded["column_schema_"].n_columns,) if self.per_feature else (None,)
        array = self._read_finite(name, stored, arrays, shape)
        if array.size == 0 or (self.ascending and np.any(np.diff(array) < 0)):
            raise ValueError("is empty or out of order")
        return array


class Rows(_Floats64):
    """A float64 matrix with one column per model column of the stored
    ``column_schema_`` and at most ``max_rows`` rows (the detector's
    complete reference rows, its neighbour rows): finite, or NaN where
    ``missing`` allows missing entries."""

    def __init__(self, max_rows, *, missing=False, **kwargs):
        super().__init__(**kwargs)
        self.max_rows = max_rows
        self.missing = missing

    def _decode(self, name, stored, arrays, loaded):
        shape = (None, loaded["column_schema_"].n_columns)
        if self.missing:
            array = self._read(name, stored, arrays, shape)
            if np.isinf(array).any():
                raise ValueError("holds infinite values")
        else:
            array = self._read_finite(name, stored, arrays, shape)
        if not 1 <= array.shape[0] <= self.max_rows:
            raise ValueError(f"holds {array.shape[0]} rows, not 1 to {self.max_rows}")
        # Whether discrete columns hold valid codes is checked with the
        # network (VAEAnomalyDetector._check_loaded_state).
        return array


class ToDict(_Codec):
    """An object with JSON-able ``to_dict()`` and a ``from_dict`` classmethod."""

    def __init__(self, cls, **kwargs):
        super().__init__(**kwargs)
        self.cls = cls

    def _encode(self, name, value, arrays):
        return _plain(value.to_dict())

    def _decode(self, name, stored, arrays, loaded):
        return self.cls.from_dict(stored)


class Module(_Codec):
    """A VAEModule: its constructor arguments in JSON, its weights as arrays."""

    def _encode(self, name, value, arrays):
        keys = []
        for key, tensor in value.state_dict().items():
            arrays[f"{name}.{key}"] = tensor.detach().cpu().numpy().copy()
            keys.append(key)
        return {"config": value.config(), "state_dict": keys}

    def _decode(self, name, stored, arrays, loaded):
        if not isinstance(stored, dict) or set(stored) != {"config", "state_dict"}:
            raise ValueError("expected keys 'config' and 'state_dict'")
        config = stored["config"]
        if not isinstance(config, dict):
            raise TypeError("the module config is not a mapping")
        # Every layer has stored weights: more layers than members is a
        # tampered file, refused before the many modules would be built.
        if len(config.get("hidden_layer_sizes") or ()) > len(arrays.unread):
            raise ValueError("the network has more layers than the file has arrays")
        # Built on the meta device first: a tampered config asking for a huge
        # network must fail the shape checks below, not allocate the memory.
        with torch.device("meta"):
            expected = VAEModule(**config).state_dict()
        if stored["state_dict"] != list(expected):
            raise ValueError("the stored weights do not match the network's layers")
        state = {}
        for key, reference in expected.items():
            array = arrays.read(f"{name}.{key}", reference.shape, np.float32)
            if not np.isfinite(array).all():
                raise ValueError(f"weight {key!r} holds NaN or infinite values")
            state[key] = torch.from_numpy(array)
        module = VAEModule(**config)
        module.load_state_dict(state)
        return module.to(loaded["device_"]).eval()


class AdamMoments(_Codec):
    """Adam's state per parameter index of ``module_``: a step count and two
    float32 moment arrays of the parameter's shape (``partial_fit``
    continues from it)."""

    def _encode(self, name, value, arrays):
        steps = {}
        for index, entry in value.items():
            for key in ADAM_MOMENTS:
                arrays[f"{name}.{index}.{key}"] = entry[key]
            steps[str(index)] = entry["step"]
        return steps

    def _decode(self, name, stored, arrays, loaded):
        if not isinstance(stored, dict):
            raise TypeError("expected a mapping of parameter index to step")
        parameters = list(loaded["module_"].parameters())
        state = {}
        for index, step in stored.items():
            if not (index.isdigit() and int(index) < len(parameters)):
                raise ValueError(
                    f"names parameter {index!r:.20}; the network has {len(parameters)}"
                )
            if not _is_number(step) or not 0 <= step < 2**53 or step != int(step):
                raise ValueError(f"has a bad step count {step!r:.20} for parameter {index}")
            entry = {"step": float(step)}
            shape = parameters[int(index)].shape
            for key in ADAM_MOMENTS:
                array = arrays.read(f"{name}.{index}.{key}", shape, np.float32)
                if not np.isfinite(array).all():
                    raise ValueError(f"{key} of parameter {index} holds NaN or infinite values")
                entry[key] = array
            state[int(index)] = entry
        return state


def _plain(value):
    """``value`` with numpy scalars and arrays turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# The fitted attributes of each estimator and how they are stored. An
# attribute that ``fit`` sets must be listed, or saved models lose it (a test
# checks the two agree). ``device_`` is not stored: ``load`` chooses it.
_SHARED_ATTRIBUTES = {
    "n_features_in_": Int(1, 2**31 - 1),
    "feature_names_in_": Strings(optional=True),
    # Before mean_ and scale_: their shapes follow from it.
    "column_schema_": ToDict(ColumnSchema),
    "mean_": Array(per_feature=True),
    "scale_": Array(per_feature=True),
    "module_": Module(),
    # fit draws it with randint(2**31 - 1).
    "_seed": Int(0, 2**31 - 2),
    "loss_curve_": Floats(),
    "validation_scores_": Floats(nullable=True),
    "best_loss_": Float(infinite=math.inf),
    "best_validation_score_": Float(infinite=-math.inf, nullable=True),
    "n_iter_": Int(0, 2**53),
    # The step size a warm run goes on with (divergence may have lowered it).
    "_learning_rate": Float(),
    "_moments": ToDict(ColumnMoments),
    "_optimizer_state": AdamMoments(),
}


class Estimators(_Codec):
    """A list of fitted skvae estimators (the detector's cross-conformal fold
    models), each stored as a whole model file in a byte array and read back
    with the classes the caller gave ``load``."""

    def _encode(self, name, value, arrays):
        keys = []
        for index, estimator in enumerate(value):
            buffer = io.BytesIO()
            save(estimator, buffer)
            arrays[f"{name}.{index}"] = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
            keys.append(f"{name}.{index}")
        return keys

    def _decode(self, name, stored, arrays, loaded):
        if not isinstance(stored, list) or stored != [f"{name}.{i}" for i in range(len(stored))]:
            raise ValueError("expected a list of stored model files")
        return [
            load(
                io.BytesIO(arrays.read(key, (None,), np.uint8).tobytes()),
                loaded["classes"],
                device=loaded["device_"],
            )
            for key in stored
        ]


FITTED_ATTRIBUTES = {
    "VAETransformer": _SHARED_ATTRIBUTES,
    "VAEAnomalyDetector": {
        **_SHARED_ATTRIBUTES,
        "offset_": Float(),
        "calibration_scores_": Array(ascending=True),
        # Optional: files written before cross-conformal calibration lack it.
        "calibration_models_": Estimators(nullable=True, optional=True),
        # Optional: files written before the drift correction lack it.
        "missing_reference_": Rows(REFERENCE_ROWS, nullable=True, optional=True),
        # Optional: files written before novelty=True lack them.
        "neighbor_rows_": Rows(NEIGHBOR_MAX_ROWS, missing=True, nullable=True, optional=True),
        "neighbor_scaling_": Array(nullable=True, optional=True),
    },
}


# ------------------------------------------------------------- parameters
def _encode_params(params):
    encoded = {}
    for name, value in params.items():
        if isinstance(value, np.random.RandomState):
            kind, keys, pos, has_gauss, cached = value.get_state()
            value = {"RandomState": [kind, keys.tolist(), pos, has_gauss, cached]}
        encoded[name] = _plain(value)
    return encoded


def _decode_params(stored, defaults):
    if not isinstance(stored, dict):
        raise ModelFileError("the parameters are not a mapping")
    unknown = sorted(set(stored) - set(defaults))
    if unknown:
        raise ModelFileError(f"unknown parameters {unknown}")
    params = dict(stored)
    state = params.get("random_state")
    if isinstance(state, dict):
        random_state = np.random.RandomState()
        try:
            kind, keys, *rest = state["RandomState"]
            random_state.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"random_state cannot be restored: {error}") from error
        params["random_state"] = random_state
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    return params


# ----------------------------------------------------------- file layout
# Every member carries this timestamp rather than the clock's, so the same
# model gives the same bytes (a fold model is stored as a file inside a file).
MEMBER_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def _member(name):
    member = zipfile.ZipInfo(name, date_time=MEMBER_DATE_TIME)
    member.compress_type = zipfile.ZIP_DEFLATED
    return member


def _write(file, header, arrays):
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_member(HEADER_NAME), json.dumps(header, indent=1, allow_nan=True))
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(_member(f"{ARRAY_PREFIX}{key}.npy"), buffer.getvalue())


class _Arrays:
    """The ``.npy`` members of an open model file, read when a codec asks.

    Each member's header is checked against the shape and dtype the model
    needs before its data is read, so ``load`` allocates what the network
    the file describes needs, not what a member claims.
    """

    def __init__(self, archive, infos):
        self.archive = archive
        self.infos = infos
        self.unread = set(infos)

    def read(self, key, shape, dtype):
        """The array ``key`` of ``shape`` (None: any length) and ``dtype``."""
        if key not in self.unread:
            raise ValueError(f"the array {key!r} is missing")
        self.unread.discard(key)
        info = self.infos[key]
        with self.archive.open(info) as stream:
            try:
                version = np.lib.format.read_magic(stream)
                read_header = {
                    (1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0,
                }[version]
                found, fortran_order, found_dtype = read_header(stream)
            except (KeyError, ValueError) as error:
                raise ValueError(f"the array {key!r} is malformed ({error})") from error
            shape = tuple(found[i] if n is None else n for i, n in enumerate(shape))
            if found != shape or found_dtype != dtype or fortran_order:
                raise ValueError(
                    f"the array {key!r} is malformed: it holds {found_dtype} of shape "
                    f"{found}; the model needs {np.dtype(dtype)} of shape {shape}"
                )
            size = math.prod(shape) * found_dtype.itemsize
            # Checked before the allocation: the member's declared size is
            # within the limit, the header's shape need not be.
            if stream.tell() + size != info.file_size:
                raise ValueError(
                    f"the array {key!r} is malformed: its size disagrees with its header"
                )
            buffer = bytearray(size)
            view = memoryview(buffer)
            while view:
                count = stream.readinto(view)
                if not count:
                    raise EOFError(f"the array {key!r} is truncated")
                view = view[count:]
        return np.frombuffer(buffer, dtype=found_dtype).reshape(shape)


@contextlib.contextmanager
def _opened(file):
    """The header and the arrays of a model file, with the archive open;
    ModelFileError for a file beyond the limits or with members ``save``
    never writes."""
    with zipfile.ZipFile(file) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ModelFileError(
                f"it has {len(infos)} members; a model file has at most {MAX_MEMBERS}"
            )
        size = sum(info.file_size for info in infos)
        if size > MAX_UNCOMPRESSED_BYTES:
            raise ModelFileError(
                f"it uncompresses to {size} bytes; a model file holds at most "
                f"{MAX_UNCOMPRESSED_BYTES}"
            )
        arrays = {}
        header_info = None
        for info in infos:
            member = info.filename
            key = member[len(ARRAY_PREFIX) : -len(".npy")]
            if member == HEADER_NAME and header_info is None:
                header_info = info
            elif member.startswith(ARRAY_PREFIX) and member.endswith(".npy") and key not in arrays:
                arrays[key] = info
            else:
                raise ModelFileError(f"unexpected member {member!r:.100}")
        if header_info is None:
            raise ModelFileError(f"it has no {HEADER_NAME}")
        if header_info.file_size > MAX_HEADER_BYTES:
            raise ModelFileError(
                f"its {HEADER_NAME} has {header_info.file_size} bytes; at most "
                f"{MAX_HEADER_BYTES} are read"
            )
        header = json.loads(archive.read(header_info).decode("utf-8"))
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ModelFileError("it is not an skvae model file (no format marker)")
        yield header, _Arrays(archive, arrays)


def _check_version(header):
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"its format version {version!r} is not an integer")
    if version not in READABLE_VERSIONS:
        raise ModelFileError(
            f"it has format version {version}, written by skvae "
            f"{header.get('skvae_version', '?')}; this skvae reads versions "
            f"{' and '.join(map(str, READABLE_VERSIONS))}. "
            "Load it with the skvae version that wrote it, or refit the model."
        )
    return version


def _upgrade_v1(fitted):
    """The fitted attributes of a version 1 file in the layout of version 2:
    its ``_history`` (checked as before) gives the step size; the rest of it
    repeats the public attributes, which stay the record."""
    if not isinstance(fitted, dict) or "_history" not in fitted:
        return fitted
    try:
        history = TrainingHistory.from_dict(fitted["_history"])
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"the fitted attribute _history {error}") from error
    upgraded = {name: value for name, value in fitted.items() if name != "_history"}
    upgraded["_learning_rate"] = history.learning_rate
    return upgraded


# ------------------------------------------------------------ public API
def _check_file_argument(file, method):
    """TypeError unless ``file`` is a path or a binary file object with ``method``."""
    if isinstance(file, (str, os.PathLike)) or hasattr(file, method):
        if isinstance(file, io.TextIOBase):
            raise TypeError("model files are binary: open the file with 'wb' or 'rb'")
        return
    hint = "; wrap bytes in io.BytesIO" if isinstance(file, (bytes, bytearray)) else ""
    raise TypeError(f"expected a path or a binary file object, got {type(file).__name__}{hint}")


def save(estimator, file):
    """Write a fitted estimator to ``file`` (a path or a binary file object).

    Writing to a path goes through a temporary file in the same folder, so an
    interrupted save never leaves a half-written model under that name.
    """
    cls = type(estimator)
    name = cls.__name__
    # A subclass may hold state the table does not list, and load would
    # build the parent class: refused.
    if name not in FITTED_ATTRIBUTES or not cls.__module__.startswith(f"{__package__}."):
        raise TypeError(
            f"save() supports {sorted(FITTED_ATTRIBUTES)}, not {name}; "
            "use pickle or joblib for subclasses."
        )
    arrays = {}
    fitted = {}
    for attribute, codec in FITTED_ATTRIBUTES[name].items():
        if not hasattr(estimator, attribute):
            if codec.optional:
                continue
            raise ValueError(f"the fitted attribute {attribute} is missing")
        fitted[attribute] = codec.encode(attribute, getattr(estimator, attribute), arrays)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "skvae_version": __version__,
        "estimator": name,
        "params": _encode_params(estimator.get_params(deep=False)),
        "fitted": fitted,
    }
    _check_file_argument(file, "write")
    if hasattr(file, "write"):
        _write(file, header, arrays)
        return
    path = os.fspath(file)
    folder = os.path.dirname(os.path.abspath(path))
    # Checked first: otherwise the error names the temporary file.
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder; save() needs a file name")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"there is no folder {folder} to save {path} in")
    handle, temporary = tempfile.mkstemp(prefix=".skvae-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            _write(stream, header, arrays)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load(file, classes, *, device="cpu"):
    """Read an estimator written by ``save``; no code in the file is run.

    ``classes`` maps the estimator names a file may hold to the classes to
    build; the caller passes it (``skvae.load`` all of them, a class's
    ``load`` itself only). ``skvae.load`` documents the rest.
    """
    _check_file_argument(file, "read")
    device = resolve_device(device)
    where = f"'{os.fspath(file)}'" if isinstance(file, (str, os.PathLike)) else "the file"
    with contextlib.ExitStack() as stack:
        if isinstance(file, (str, os.PathLike)):
            # Opened here: a missing or unreadable path is an OSError, while
            # one from reading the content (a crafted offset) is a bad file.
            file = stack.enter_context(open(file, "rb"))
        try:
            with _opened(file) as (header, arrays):
                return _build(header, arrays, classes, device)
        except ModelFileError as error:
            raise ModelFileError(f"Cannot load {where}: {error}") from error.__cause__
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            OSError,
            UnicodeDecodeError,
            NotImplementedError,  # a compression method zipfile does not know
        ) as error:
            raise ModelFileError(
                f"Cannot load {where}: it is not a readable skvae model file ({error})"
            ) from error
        except (MemoryError, RecursionError) as error:
            raise ModelFileError(
                f"Cannot load {where}: it is too large or too deeply nested to read "
                f"({type(error).__name__})"
            ) from error
        except Exception as error:  # bad JSON, and anything a check above missed
            raise ModelFileError(
                f"Cannot load {where}: its content is malformed ({type(error).__name__}: {error})"
            ) from error


def _build(header, arrays, classes, device):
    """The estimator a model file's header and arrays describe."""
    version = _check_version(header)
    name = header.get("estimator")
    if not isinstance(name, str) or name not in FITTED_ATTRIBUTES:
        raise ModelFileError(f"unknown estimator {name!r:.100}")
    if name not in classes:
        raise ModelFileError(f"it holds a {name}, not a {' or a '.join(classes)}")
    cls = classes[name]
    params = _decode_params(header.get("params"), cls().get_params(deep=False))
    estimator = cls(**params)
    try:
        estimator._validate_params()
    except ValueError as error:
        raise ModelFileError(f"invalid parameters: {error}") from error
    fitted = header.get("fitted")
    if version == 1:
        fitted = _upgrade_v1(fitted)
    if not isinstance(fitted, dict):
        raise ModelFileError("it has no fitted attributes")
    spec = FITTED_ATTRIBUTES[name]
    unknown = sorted(set(fitted) - set(spec))
    if unknown:
        raise ModelFileError(f"unknown fitted attributes {unknown}")
    loaded = {"device_": device}
    for attribute, codec in spec.items():
        if attribute not in fitted:
            if codec.optional:
                continue
            raise ModelFileError(f"the fitted attribute {attribute} is missing")
        try:
            # The classes too: nested model files (fold models) are built with them.
            context = {**loaded, "classes": classes}
            loaded[attribute] = codec.decode(attribute, fitted[attribute], arrays, context)
        except (TypeError, ValueError) as error:
            raise ModelFileError(f"the fitted attribute {attribute} {error}") from error
        except Exception as error:  # KeyError, OverflowError, MemoryError, ...
            raise ModelFileError(
                f"the fitted attribute {attribute} cannot be read ({type(error).__name__}: {error})"
            ) from error
    if arrays.unread:
        raise ModelFileError(
            f"unexpected member {ARRAY_PREFIX}{sorted(arrays.unread)[0]}.npy: save never writes it"
        )
    for attribute, value in loaded.items():
        setattr(estimator, attribute, value)
    try:
        estimator._check_loaded_state()
    except ValueError as error:
        raise ModelFileError(f"its fitted attributes disagree: {error}") from error
    return estimator

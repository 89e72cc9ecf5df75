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
``_BaseVAE._fitted_attributes`` maps each fitted attribute to one of the
codecs below.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np
import torch

from ._network import VAEModule

FORMAT = "skvae-model"
# Bump when a file written by this code could not be read by older code.
FORMAT_VERSION = 1
HEADER_NAME = "skvae.json"
ARRAY_PREFIX = "arrays/"


class ModelFileError(ValueError):
    """A model file is not one skvae wrote, is damaged, or was tampered with."""


# ------------------------------------------------------------------ codecs
class _Codec:
    """How one fitted attribute is written to and read from a model file.

    ``encode`` returns a JSON-able value and may put numpy arrays into
    ``arrays`` under keys starting with ``name``; ``decode`` reverses it and
    raises ValueError or TypeError on anything it would not have written.
    """

    def __init__(self, *, nullable=False, optional=False):
        # nullable: the value may be None; optional: the attribute may be absent.
        self.nullable = nullable
        self.optional = optional

    def encode(self, name, value, arrays):
        return None if value is None else self._encode(name, value, arrays)

    def decode(self, name, stored, arrays, device):
        if stored is None:
            if not self.nullable:
                raise ValueError("is null")
            return None
        return self._decode(name, stored, arrays, device)

    def _encode(self, name, value, arrays):
        return _plain(value)

    def _decode(self, name, stored, arrays, device):
        raise NotImplementedError


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Int(_Codec):
    def _decode(self, name, stored, arrays, device):
        if not isinstance(stored, int) or isinstance(stored, bool):
            raise TypeError(f"expected an integer, got {stored!r:.100}")
        return stored


class Float(_Codec):
    def _decode(self, name, stored, arrays, device):
        if not _is_number(stored):
            raise TypeError(f"expected a number, got {stored!r:.100}")
        return float(stored)


class Floats(_Codec):
    """A list of floats (loss curves)."""

    def _decode(self, name, stored, arrays, device):
        if not isinstance(stored, list) or not all(_is_number(v) for v in stored):
            raise TypeError(f"expected a list of numbers, got {stored!r:.100}")
        return [float(v) for v in stored]


class Strings(_Codec):
    """An object array of str (``feature_names_in_``)."""

    def _encode(self, name, value, arrays):
        return [str(v) for v in value]

    def _decode(self, name, stored, arrays, device):
        if not isinstance(stored, list) or not all(isinstance(v, str) for v in stored):
            raise TypeError(f"expected a list of strings, got {stored!r:.100}")
        return np.asarray(stored, dtype=object)


class Array(_Codec):
    """A finite float64 numpy array, stored as ``.npy``."""

    def _encode(self, name, value, arrays):
        arrays[name] = np.asarray(value, dtype=np.float64)
        return name

    def _decode(self, name, stored, arrays, device):
        array = _stored_array(stored, name, arrays)
        if array.dtype != np.float64 or not np.isfinite(array).all():
            raise ValueError(f"expected finite float64 values, got dtype {array.dtype}")
        return array


class ToDict(_Codec):
    """An object with JSON-able ``to_dict()`` and a ``from_dict`` classmethod."""

    def __init__(self, cls, **kwargs):
        super().__init__(**kwargs)
        self.cls = cls

    def _encode(self, name, value, arrays):
        return _plain(value.to_dict())

    def _decode(self, name, stored, arrays, device):
        return self.cls.from_dict(stored)


class Module(_Codec):
    """A VAEModule: its constructor arguments in JSON, its weights as arrays."""

    def _encode(self, name, value, arrays):
        keys = []
        for key, tensor in value.state_dict().items():
            arrays[f"{name}.{key}"] = tensor.detach().cpu().numpy().copy()
            keys.append(key)
        return {"config": value.config(), "state_dict": keys}

    def _decode(self, name, stored, arrays, device):
        if not isinstance(stored, dict) or set(stored) != {"config", "state_dict"}:
            raise ValueError("expected keys 'config' and 'state_dict'")
        config = stored["config"]
        if not isinstance(config, dict):
            raise TypeError("the module config is not a mapping")
        # Built on the meta device first: a tampered config asking for a huge
        # network must fail the shape check below, not allocate the memory.
        with torch.device("meta"):
            expected = VAEModule(**config).state_dict()
        if stored["state_dict"] != list(expected):
            raise ValueError("the stored weights do not match the network's layers")
        state = {}
        for key, reference in expected.items():
            array = _stored_array(f"{name}.{key}", f"{name}.{key}", arrays)
            if array.shape != tuple(reference.shape) or array.dtype != np.float32:
                raise ValueError(
                    f"weight {key!r} has shape {array.shape} and dtype {array.dtype}; "
                    f"the network needs {tuple(reference.shape)} float32"
                )
            if not np.isfinite(array).all():
                raise ValueError(f"weight {key!r} holds NaN or infinite values")
            state[key] = torch.from_numpy(array)
        module = VAEModule(**config)
        module.load_state_dict(state)
        return module.to(device).eval()


class AdamMoments(_Codec):
    """Adam's state per parameter index: a step count and two float32 moment
    arrays (``partial_fit`` continues from it)."""

    MOMENTS = ("exp_avg", "exp_avg_sq")

    def _encode(self, name, value, arrays):
        steps = {}
        for index, entry in value.items():
            for key in self.MOMENTS:
                arrays[f"{name}.{index}.{key}"] = entry[key]
            steps[str(index)] = entry["step"]
        return steps

    def _decode(self, name, stored, arrays, device):
        if not isinstance(stored, dict):
            raise TypeError("expected a mapping of parameter index to step")
        state = {}
        for index, step in stored.items():
            if not index.isdigit() or not _is_number(step) or not 0 <= step < 2**53:
                raise ValueError(f"has a bad entry {index!r:.20}: {step!r:.20}")
            entry = {"step": float(step)}
            for key in self.MOMENTS:
                array = _stored_array(f"{name}.{index}.{key}", f"{name}.{index}.{key}", arrays)
                if array.dtype != np.float32 or not np.isfinite(array).all():
                    raise ValueError(f"{key} of parameter {index} is not finite float32")
                entry[key] = array
            state[int(index)] = entry
        return state


class Estimators(_Codec):
    """A list of fitted skvae estimators (the detector's cross-conformal fold
    models), each stored as a whole model file in a byte array."""

    def _encode(self, name, value, arrays):
        keys = []
        for index, estimator in enumerate(value):
            buffer = io.BytesIO()
            save(estimator, buffer)
            arrays[f"{name}.{index}"] = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
            keys.append(f"{name}.{index}")
        return keys

    def _decode(self, name, stored, arrays, device):
        if not isinstance(stored, list) or stored != [f"{name}.{i}" for i in range(len(stored))]:
            raise ValueError("expected a list of stored model files")
        estimators = []
        for key in stored:
            array = _stored_array(key, key, arrays)
            if array.dtype != np.uint8 or array.ndim != 1:
                raise ValueError(f"{key} is not a byte array")
            estimators.append(load(io.BytesIO(array.tobytes()), device=device))
        return estimators


def _stored_array(stored, name, arrays):
    if stored != name or name not in arrays:
        raise ValueError(f"the array {name!r} is missing")
    return arrays[name]


def _plain(value):
    """``value`` with numpy scalars and arrays turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


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
def _write(file, header, arrays):
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(HEADER_NAME, json.dumps(header, indent=1, allow_nan=True))
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(f"{ARRAY_PREFIX}{key}.npy", buffer.getvalue())


def _read(file):
    """Header and arrays of a model file; ModelFileError for anything else."""
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            if HEADER_NAME not in names:
                raise ModelFileError(f"it has no {HEADER_NAME}")
            header = json.loads(archive.read(HEADER_NAME).decode("utf-8"))
            arrays = {}
            for member in names:
                if member == HEADER_NAME:
                    continue
                if not (member.startswith(ARRAY_PREFIX) and member.endswith(".npy")):
                    raise ModelFileError(f"unexpected member {member!r}")
                with archive.open(member) as stream:
                    array = np.lib.format.read_array(stream, allow_pickle=False)
                arrays[member[len(ARRAY_PREFIX) : -len(".npy")]] = array
    except ModelFileError:
        raise
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        UnicodeDecodeError,
        RecursionError,
        NotImplementedError,  # a compression method zipfile does not know
    ) as error:
        raise ModelFileError(f"it is not a readable skvae model file ({error})") from error
    except ValueError as error:  # bad JSON, a pickled (object) array, a bad .npy header
        raise ModelFileError(f"its content is malformed ({error})") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError("it is not an skvae model file (no format marker)")
    return header, arrays


def _check_version(header):
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"its format version {version!r} is not an integer")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"it has format version {version}, written by skvae "
            f"{header.get('skvae_version', '?')}; this skvae reads version {FORMAT_VERSION}. "
            "Load it with the skvae version that wrote it, or refit the model."
        )


# ------------------------------------------------------------ public API
def _estimator_classes():
    # Imported here: the estimator modules import this one.
    from ._anomaly import VAEAnomalyDetector
    from ._transformer import VAETransformer

    return {cls.__name__: cls for cls in (VAEAnomalyDetector, VAETransformer)}


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
    from . import __version__

    name = type(estimator).__name__
    if _estimator_classes().get(name) is not type(estimator):
        raise TypeError(
            f"save() supports {sorted(_estimator_classes())}, not {name}; "
            "use pickle or joblib for subclasses."
        )
    arrays = {}
    fitted = {}
    for attribute, codec in estimator._fitted_attributes().items():
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


def load(file, *, device="cpu"):
    """Read an estimator written by ``save``; no code in the file is run.

    Parameters
    ----------
    file : str, path-like or binary file object
        A file written by ``VAEAnomalyDetector.save`` or
        ``VAETransformer.save``.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to put the network.

    Returns
    -------
    estimator : VAEAnomalyDetector or VAETransformer
        Fitted, scoring exactly as the saved one did.

    Raises
    ------
    ModelFileError
        The file is not an skvae model file, is truncated or damaged, was
        altered into something ``save`` would not write, or has a format
        version this skvae cannot read. A subclass of ValueError.

    Examples
    --------
    >>> import io, numpy as np, skvae
    >>> X = np.random.RandomState(0).normal(size=(50, 3))
    >>> detector = skvae.VAEAnomalyDetector(max_iter=3, random_state=0).fit(X)
    >>> buffer = io.BytesIO()
    >>> detector.save(buffer)
    >>> loaded = skvae.load(io.BytesIO(buffer.getvalue()))
    >>> bool(np.array_equal(loaded.score_samples(X), detector.score_samples(X)))
    True
    """
    from ._base import _resolve_device

    _check_file_argument(file, "read")
    device = _resolve_device(device)
    where = f"'{os.fspath(file)}'" if isinstance(file, (str, os.PathLike)) else "the file"
    try:
        header, arrays = _read(file)
        _check_version(header)
        cls = _estimator_classes().get(header.get("estimator"))
        if cls is None:
            raise ModelFileError(f"unknown estimator {header.get('estimator')!r:.100}")
        params = _decode_params(header.get("params"), cls().get_params(deep=False))
        estimator = cls(**params)
        try:
            estimator._validate_params()
        except ValueError as error:
            raise ModelFileError(f"invalid parameters: {error}") from error
        fitted = header.get("fitted")
        if not isinstance(fitted, dict):
            raise ModelFileError("it has no fitted attributes")
        spec = estimator._fitted_attributes()
        unknown = sorted(set(fitted) - set(spec))
        if unknown:
            raise ModelFileError(f"unknown fitted attributes {unknown}")
        for attribute, codec in spec.items():
            if attribute not in fitted:
                if codec.optional:
                    continue
                raise ModelFileError(f"the fitted attribute {attribute} is missing")
            try:
                value = codec.decode(attribute, fitted[attribute], arrays, device)
            except (TypeError, ValueError, KeyError, RuntimeError) as error:
                raise ModelFileError(f"the fitted attribute {attribute} {error}") from error
            setattr(estimator, attribute, value)
        estimator.device_ = device
        try:
            estimator._check_loaded_state()
        except ValueError as error:
            raise ModelFileError(f"its fitted attributes disagree: {error}") from error
    except ModelFileError as error:
        raise ModelFileError(f"Cannot load {where}: {error}") from error.__cause__
    return estimator

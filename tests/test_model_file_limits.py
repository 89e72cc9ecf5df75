"""Model files from strangers: bounded memory and time, nothing loads that save
would not write, and every failure is a ModelFileError naming the problem."""

import io
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pandas as pd
import pytest

import skvae
from skvae import ModelFileError, VAEAnomalyDetector, _persistence
from skvae._training import TrainingHistory

from .conftest import FAST
from .test_persistence import set_in

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHT = "arrays/module_.encoder.0.weight.npy"


@pytest.fixture(scope="module")
def model():
    """A small detector with a categorical column, after one partial_fit (so
    the file holds Adam moments), as file bytes, with its data."""
    rng = np.random.RandomState(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "c": rng.choice(["x", "y"], size=60)})
    detector = VAEAnomalyDetector(**{**FAST, "max_iter": 3}).fit(frame)
    detector.partial_fit(frame)
    buffer = io.BytesIO()
    detector.save(buffer)
    return buffer.getvalue(), frame


def rewritten(data, header=None, members=None, extra=(), compression=zipfile.ZIP_DEFLATED):
    """``data`` with its header passed through ``header``, members replaced
    from the dict ``members``, and ``extra`` (name, bytes) pairs appended."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as target:
        for name in source.namelist():
            content = source.read(name)
            if name == "skvae.json" and header is not None:
                content = json.dumps(header(json.loads(content)))
            target.writestr(name, (members or {}).get(name, content))
        for name, content in extra:
            target.writestr(name, content)
    return out.getvalue()


def npy(array=None, *, declared=None, data=b""):
    """An .npy member: of ``array``, or a header declaring ``declared``
    (shape, dtype) followed by ``data``."""
    buffer = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buffer, array)
        return buffer.getvalue()
    shape, dtype = declared
    header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + data


def load_quickly(data, seconds=10):
    start = time.perf_counter()
    try:
        return skvae.load(io.BytesIO(data))
    finally:
        assert time.perf_counter() - start < seconds


# -------------------------------------------------------- memory and time
BOUNDED_LOAD = textwrap.dedent(
    """
    import resource, sys, time
    import skvae

    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    # Address space for what is loaded now plus 1 GiB: a 20 GB allocation fails.
    resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, resource.RLIM_INFINITY))
    start = time.perf_counter()
    try:
        skvae.load(sys.argv[1])
    except skvae.ModelFileError as error:
        print("ModelFileError", time.perf_counter() - start, error)
    except BaseException as error:
        print("ESCAPED", type(error).__name__, error)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_weight_declaring_20_gb_fails_before_reading_in_bounded_memory(model, tmp_path):
    """2.5e9 float64 values declared by a member of about 1 MB: refused from
    its header, in a process that could not allocate them anyway."""
    data, _ = model
    bomb = npy(declared=((50_000, 50_000), np.float64), data=bytes(2**20))
    path = tmp_path / "bomb.skvae"
    path.write_bytes(rewritten(data, members={WEIGHT: bomb}))
    assert path.stat().st_size < 2**20
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", BOUNDED_LOAD, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert result.stdout.startswith("ModelFileError"), result.stdout + result.stderr
    _, seconds, message = result.stdout.split(" ", 2)
    assert float(seconds) < 10
    assert "encoder.0.weight" in message and "(50000, 50000)" in message


def test_uncompressed_size_is_bounded(model, monkeypatch):
    data, _ = model
    size = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(data)).infolist())
    monkeypatch.setattr(_persistence, "MAX_UNCOMPRESSED_BYTES", size - 1)
    with pytest.raises(ModelFileError, match=f"uncompresses to {size} bytes"):
        load_quickly(data)


def test_header_size_is_bounded(model, monkeypatch):
    data, _ = model
    monkeypatch.setattr(_persistence, "MAX_HEADER_BYTES", 100)
    with pytest.raises(ModelFileError, match="skvae.json has .* bytes; at most 100"):
        load_quickly(data)


def test_100000_extra_array_members_are_refused_within_seconds(model):
    data, _ = model
    extra = ((f"arrays/extra{i}.npy", b"") for i in range(100_000))
    crafted = rewritten(data, extra=extra, compression=zipfile.ZIP_STORED)
    with pytest.raises(ModelFileError, match=r"\d{6} members; a model file has at most 10000"):
        load_quickly(crafted)


def test_an_array_member_save_never_writes_is_refused(model):
    data, _ = model
    extra = [("arrays/extra.npy", npy(np.zeros(3)))]
    with pytest.raises(ModelFileError, match="unexpected member arrays/extra.npy"):
        load_quickly(rewritten(data, extra=extra))


def test_a_duplicated_member_is_refused(model):
    data, _ = model
    source = zipfile.ZipFile(io.BytesIO(data))
    extra = [(WEIGHT, source.read(WEIGHT))]
    with pytest.warns(UserWarning, match="Duplicate name"):
        doubled = rewritten(data, extra=extra)
    with pytest.raises(ModelFileError, match="unexpected member 'arrays/module_.encoder.0"):
        load_quickly(doubled)


@pytest.mark.parametrize(
    "declared, message",
    [
        (((16, 2), np.float32), r"shape \(16, 2\); the model needs float32 of shape \(16, 3\)"),
        (((16, 3), np.float64), "float64"),
        (((16, 3, 1), np.float32), r"shape \(16, 3, 1\)"),
    ],
)
def test_array_header_is_checked_against_the_network(model, declared, message):
    data, _ = model
    member = npy(declared=declared, data=bytes(16 * 3 * 8))
    with pytest.raises(ModelFileError, match=message):
        load_quickly(rewritten(data, members={WEIGHT: member}))


def test_array_whose_size_and_header_disagree_is_refused(model):
    data, _ = model
    member = npy(declared=((16, 3), np.float32), data=bytes(10))
    with pytest.raises(ModelFileError, match="its size disagrees with its header"):
        load_quickly(rewritten(data, members={WEIGHT: member}))


def test_adam_moments_are_checked_against_their_parameter(model):
    data, _ = model
    member = npy(np.zeros((3, 16), np.float32))
    with pytest.raises(ModelFileError, match=r"_optimizer_state.0.exp_avg.*shape \(3, 16\)"):
        load_quickly(rewritten(data, members={"arrays/_optimizer_state.0.exp_avg.npy": member}))


def test_more_layers_than_arrays_is_refused_before_building_them(model):
    data, _ = model
    layers = [1] * 20_000
    change = set_in(["fitted", "module_", "config", "hidden_layer_sizes"], layers)
    with pytest.raises(ModelFileError, match="more layers than the file has arrays"):
        load_quickly(rewritten(data, header=change))


# ----------------------------------------------------------- stored values
@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", "fast"),
        ("learning_rate", -0.001),
        ("learning_rate", math.nan),
        ("learning_rate", math.inf),
        ("n_iter", -1),
        ("n_iter", 2.5),
        ("epochs_without_improvement", "3"),
        ("loss_curve", [math.nan, 1.0, 2.0, 3.0]),
        ("loss_curve", "1, 2"),
        ("validation_scores", [None]),
        ("best_loss", "low"),
        ("best_loss", math.nan),
        ("best_validation_score", math.inf),
        ("stopped_early", "no"),
        ("interrupted", 1),
    ],
)
def test_training_history_refuses_what_training_never_records(field, value):
    state = TrainingHistory(loss_curve=[4.0, 3.0, 2.0, 1.0], n_iter=4, best_loss=1.0).to_dict()
    TrainingHistory.from_dict(state)  # the unchanged state loads
    with pytest.raises(ValueError, match=field):
        TrainingHistory.from_dict({**state, field: value})


def test_training_history_refuses_curves_that_disagree_with_n_iter():
    state = TrainingHistory(loss_curve=[4.0, 3.0], n_iter=3, best_loss=3.0).to_dict()
    with pytest.raises(ValueError, match="n_iter=3"):
        TrainingHistory.from_dict(state)


def test_learning_rate_fast_is_refused_by_load(model):
    """It used to load, and partial_fit then failed inside torch."""
    data, _ = model
    change = set_in(["fitted", "_history", "learning_rate"], "fast")
    with pytest.raises(ModelFileError, match="_history learning_rate holds 'fast'"):
        load_quickly(rewritten(data, header=change))


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("offset_",), math.inf, "offset_ is inf"),
        (("offset_",), math.nan, "offset_ is nan"),
        (("best_loss_",), -math.inf, "best_loss_ is -inf"),
        (("_seed",), -1, "_seed is -1"),
        (("n_iter_",), -1, "n_iter_ is -1"),
        (("n_features_in_",), 0, "n_features_in_ is 0"),
        (("loss_curve_",), [math.inf], "loss_curve_ holds NaN or infinite"),
        (("_optimizer_state", "0"), 1.5, "bad step count 1.5"),
        (("_optimizer_state", "99"), 1, "names parameter '99'"),
    ],
)
def test_stored_values_out_of_range_are_refused(model, path, value, message):
    data, _ = model
    with pytest.raises(ModelFileError, match=message):
        load_quickly(rewritten(data, header=set_in(["fitted", *path], value)))


@pytest.mark.parametrize(
    "change, message",
    [
        # n_features_in_ against the weights and the column schema.
        (set_in(["fitted", "n_features_in_"], 3), r"mean_.*shape \(3,\)"),
        (set_in(["fitted", "column_schema_", "kinds", 0], "bernoulli"), "network"),
        (set_in(["fitted", "column_schema_", "categories", 1], ["x", "x"]), "distinct"),
        (set_in(["fitted", "_moments", "mean", 0], 5.0), "column moments"),
        (set_in(["fitted", "n_iter_"], 3), "n_iter_=3"),
        (set_in(["fitted", "validation_scores_"], None), "go together"),
    ],
)
def test_stored_values_that_disagree_are_refused(model, change, message):
    data, _ = model
    with pytest.raises(ModelFileError, match=f"disagree.*{message}|{message}"):
        load_quickly(rewritten(data, header=change))


def test_unsorted_calibration_scores_are_refused(model):
    data, _ = model
    scores = np.load(
        io.BytesIO(zipfile.ZipFile(io.BytesIO(data)).read("arrays/calibration_scores_.npy"))
    )
    member = npy(scores[::-1].copy())
    with pytest.raises(ModelFileError, match="calibration_scores_ is empty or out of order"):
        load_quickly(rewritten(data, members={"arrays/calibration_scores_.npy": member}))


# ------------------------------------------------- no bare exception escapes
def nested(header):
    """The header with fitted attributes nested too deep for json to parse."""
    text = json.dumps({**header, "fitted": None})
    return text.replace('"fitted": null', '"fitted": ' + "[" * 100_000 + "]" * 100_000)


def as_text(change):
    return lambda header: json.dumps(change(header))


@pytest.mark.parametrize(
    "header_text, message",
    [
        # json.loads runs out of stack: RecursionError.
        (nested, "too deeply nested"),
        # An unhashable estimator name: TypeError from a dict lookup.
        (as_text(set_in(["estimator"], ["VAEAnomalyDetector"])), "unknown estimator"),
        # A layout the network's constructor chokes on: AttributeError.
        (as_text(set_in(["fitted", "module_", "config", "layout"], "x")), "module_"),
        # A count beyond int64: OverflowError.
        (as_text(set_in(["fitted", "_moments", "count"], [10**30, 1])), "_moments"),
        # The random state without its key: KeyError.
        (as_text(set_in(["params", "random_state"], {"other": 1})), "random_state"),
    ],
)
def test_no_bare_exception_escapes_load(model, header_text, message):
    data, _ = model
    source = zipfile.ZipFile(io.BytesIO(data))
    text = header_text(json.loads(source.read("skvae.json")))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            target.writestr(name, text if name == "skvae.json" else source.read(name))
    with pytest.raises(ModelFileError, match=message):
        load_quickly(out.getvalue())


def test_every_header_value_replaced_by_junk_is_a_model_file_error_or_loads_and_works(model):
    """Each leaf of the header set to values save never writes: load raises
    ModelFileError, or the model it returns scores and trains without error."""
    data, frame = model
    header = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("skvae.json"))

    def leaves(node, path=()):
        if path:
            yield path
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node[:1]):
                yield from leaves(value, (*path, index))

    junk = ["x", None, -1, math.nan, []]
    tried = 0
    for path in leaves(header):
        if path[0] == "params":
            continue  # parameters are validated as set_params does
        for value in junk:
            modified = rewritten(data, header=set_in(path, value))
            tried += 1
            try:
                loaded = skvae.load(io.BytesIO(modified))
            except ModelFileError:
                continue
            assert np.isfinite(loaded.score_samples(frame)).all(), (path, value)
            loaded.predict(frame)
            loaded.partial_fit(frame)
    assert tried > 150


def test_a_crafted_zip_offset_is_a_model_file_error_not_an_os_error(model, tmp_path):
    """The central directory moved past its place makes every member's offset
    negative: seeking there is an OSError, which for a path load used to
    pass on as if the file could not be opened."""
    data = bytearray(model[0])
    end = data.rfind(b"PK\x05\x06")
    (start,) = struct.unpack_from("<I", data, end + 16)
    struct.pack_into("<I", data, end + 16, start + 1000)
    path = tmp_path / "offset.skvae"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="offset.skvae': it is not a readable"):
        skvae.load(path)

"""The built-in demo dataset (shipped inside the package; nothing is downloaded)."""

from __future__ import annotations

from importlib import resources

import pandas as pd

DEMO_FILE = "thyroid.csv.gz"


def demo_path():
    """Path of the demo CSV inside the installed package."""
    return resources.files("skvae") / "data" / DEMO_FILE


def load_demo(return_X_y=False):
    """Thyroid disease screening data with known anomalies.

    3,772 patients, the six continuous attributes of the UCI "thyroid
    disease" (ann-thyroid) data, min-max scaled by the source: ``age``,
    ``TSH``, ``T3``, ``TT4``, ``T4U``, ``FTI``; plus a ``patient_id`` column
    and the label ``is_anomaly`` (1 for the 93 hyperfunction cases, 2.5%).
    Taken unchanged from ADBench (``38_thyroid.npz``, BSD 2-Clause).

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y)``: the six feature columns and the label, instead of
        the whole frame.

    Returns
    -------
    frame : DataFrame, or (X, y) with ``return_X_y=True``

    Examples
    --------
    >>> from skvae.datasets import load_demo
    >>> X, y = load_demo(return_X_y=True)
    >>> X.shape, int(y.sum())
    ((3772, 6), 93)
    """
    with resources.as_file(demo_path()) as path:
        frame = pd.read_csv(path)
    if return_X_y:
        return frame.drop(columns=["patient_id", "is_anomaly"]), frame["is_anomaly"]
    return frame

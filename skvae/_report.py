"""The HTML report of ``skvae detect --report``: one self-contained file.

Plots are drawn with :mod:`skvae.plotting` on plain matplotlib Figures (no
pyplot, so no GUI backend is needed) and embedded as base64 PNG; tables are
escaped by pandas. The file opens offline in any browser.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from ._version import __version__
from .plotting import (
    FeatureContributionDisplay,
    LatentSpaceDisplay,
    LossCurveDisplay,
    ScoreDistributionDisplay,
)

# The latent scatter draws at most this many rows (a seeded sample beyond).
MAX_SCATTER_ROWS = 5000
# Rows whose feature contributions get a chart.
EXPLAINED_ROWS = 3

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:last-child { text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 520px; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; max-width: 520px; }
.muted { color: #666; }
"""


def _png(figure):
    """The figure as a data: URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(draw, caption):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2))
    draw(figure.add_subplot())
    return (
        f'<figure><img src="{_png(figure)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _table(frame, **kwargs):
    return frame.to_html(
        escape=True, border=0, na_rep="", float_format=lambda v: f"{v:.4g}", **kwargs
    )


def _plots(detector, X, result, top, labels):
    figures = [
        _figure(
            lambda ax: ScoreDistributionDisplay.from_estimator(detector, X, y=labels, ax=ax),
            "Scores of all rows (higher is more normal); rows left of the dashed "
            "threshold are flagged by the model's threshold.",
        )
    ]
    sample = np.arange(len(X))
    if len(X) > MAX_SCATTER_ROWS:
        sample = np.sort(np.random.RandomState(0).choice(len(X), MAX_SCATTER_ROWS, replace=False))
    X_sample = X.iloc[sample]
    figures.append(
        _figure(
            lambda ax: LatentSpaceDisplay.from_estimator(detector, X_sample, ax=ax),
            f"Latent space of {len(sample)} rows, coloured by score.",
        )
    )
    if labels is not None:
        figures.append(
            _figure(
                lambda ax: LatentSpaceDisplay.from_estimator(
                    detector, X_sample, y=np.asarray(labels)[sample], ax=ax
                ),
                "Latent space coloured by the known labels (1 = anomaly).",
            )
        )
    figures.append(
        _figure(
            lambda ax: LossCurveDisplay.from_estimator(detector, ax=ax),
            "Training loss and validation loss per epoch (early stopping watches validation).",
        )
    )
    id_name = result.columns[0]
    for position in top.index[:EXPLAINED_ROWS]:
        row_id = result.iat[position, 0]
        figures.append(
            _figure(
                lambda ax, position=position, name=f"{id_name} {row_id}": (
                    FeatureContributionDisplay.from_estimator(
                        detector, X, row=position, row_name=name, ax=ax
                    )
                ),
                f"Per-feature contributions to the anomaly score of {id_name} {row_id}.",
            )
        )
    return "\n".join(figures)


def _parameters(detector, flagging):
    rows = {name: repr(value) for name, value in sorted(detector.get_params().items())}
    rows.update(
        {
            "flagging": flagging,
            "offset_ (threshold)": f"{detector.offset_:.6g}",
            "calibration rows (p-values)": str(len(detector.calibration_scores_)),
            "epochs run (n_iter_)": str(detector.n_iter_),
        }
    )
    return _table(pd.DataFrame({"value": pd.Series(rows)}))


def _columns_table(columns):
    """How each column was read and modelled (``describe_columns()``)."""
    shown = columns.assign(missing=[f"{v:.1%}" if v == v else "?" for v in columns["missing"]])
    return _table(shown, index=False)


def _data_summary(X, result, source, left_out, columns):
    n_missing = int((result["missing"] != "").sum())
    modelled = list(columns.loc[columns["modelled as"] != "left out", "column"])
    dropped = list(columns.loc[columns["modelled as"] == "left out", "column"])
    facts = [
        f"Source: {source}",
        f"{len(X)} rows; {len(modelled)} column(s) modelled: {', '.join(modelled)}",
        "Left out: the id and unselected column(s) "
        + (", ".join(map(str, left_out)) if left_out else "none")
        + "; by the model (see the table): "
        + (", ".join(map(str, dropped)) if dropped else "none"),
        f"{n_missing} row(s) with missing values, scored as completed by the model's "
        "prediction of them, on the complete rows' scale (named in the output's missing "
        "column)",
    ]
    items = "".join(f"<li>{html.escape(fact)}</li>" for fact in facts)
    return (
        f"<ul>{items}</ul>"
        + '<h3>How each column was read</h3><div id="columns">'
        + _columns_table(columns)
        + "</div>"
        + _table(X.describe(include="all").T)
    )


def write_report(
    path, *, detector, X, result, top, source, left_out, flagging, labels=None, columns=None
):
    """Write the self-contained HTML report of one ``skvae detect`` run.

    ``columns`` is the detector's ``describe_columns()`` (by default asked of it).
    """
    if columns is None:
        columns = detector.describe_columns()
    flagged = int(result["outlier"].sum())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>skvae outlier report</title><style>{STYLE}</style></head>
<body>
<h1>skvae outlier report</h1>
<p class="muted">{html.escape(str(source))} &middot; skvae {__version__} &middot; {stamp}</p>
<h2>Result</h2>
<p id="summary">{flagged} of {len(result)} rows flagged as outliers
({html.escape(flagging)}).</p>
<h2>Top outliers</h2>
<p class="muted">Lowest scores first; each row's largest per-feature contributions to its
anomaly score (feature=value (contribution)): nats of negative log-likelihood, or squared
standardised errors with scoring="reconstruction".</p>
{_table(top, index=False)}
<h2>Plots</h2>
{_plots(detector, X, result, top, labels)}
<h2>Data</h2>
{_data_summary(X, result, source, left_out, columns)}
<h2>Parameters</h2>
{_parameters(detector, flagging)}
</body>
</html>
"""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)

"""skvae: variational autoencoders as scikit-learn estimators, for outlier scoring."""

from ._anomaly import VAEAnomalyDetector
from ._load import load
from ._persistence import ModelFileError
from ._training import TrainingDivergedError
from ._transformer import VAETransformer
from ._version import __version__

__all__ = [
    "VAEAnomalyDetector",
    "VAETransformer",
    "TrainingDivergedError",
    "ModelFileError",
    "load",
    "__version__",
]

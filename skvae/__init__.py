"""skvae: variational autoencoders as scikit-learn estimators, for outlier scoring."""

from ._anomaly import VAEAnomalyDetector
from ._persistence import ModelFileError, load
from ._training import TrainingDivergedError
from ._transformer import VAETransformer

__version__ = "0.1.0"

__all__ = [
    "VAEAnomalyDetector",
    "VAETransformer",
    "TrainingDivergedError",
    "ModelFileError",
    "load",
    "__version__",
]

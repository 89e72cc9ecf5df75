"""skvae: variational autoencoders as scikit-learn estimators, for outlier scoring."""

from ._anomaly import VAEAnomalyDetector
from ._training import TrainingDivergedError
from ._transformer import VAETransformer

__version__ = "0.1.0"

__all__ = ["VAEAnomalyDetector", "VAETransformer", "TrainingDivergedError", "__version__"]

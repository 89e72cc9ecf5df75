"""scikit-learn's own estimator checks over small configurations of every estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skvae import VAEAnomalyDetector, VAETransformer

from .conftest import TINY

SMALL = {**TINY, "max_iter": 3}

ESTIMATORS = [
    VAETransformer(**SMALL),
    VAETransformer(**SMALL, decoder_variance="sample", early_stopping=False),
    VAEAnomalyDetector(**SMALL),
    VAEAnomalyDetector(**SMALL, scoring="iwae", n_importance_samples=4),
    VAEAnomalyDetector(**SMALL, scoring="reconstruction", contamination=0.1),
    VAEAnomalyDetector(**SMALL, novelty=True),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

import numpy as np
import pytest

from skvae import VAETransformer

from .conftest import FAST

# The quality checks train longer, in the default batches of 256 rows.
LONGER = {**FAST, "max_iter": 200, "batch_size": 256}


def test_transform_shapes_and_feature_names(blobs):
    vae = VAETransformer(**FAST).fit(blobs)
    Z = vae.transform(blobs)
    assert Z.shape == (len(blobs), 2)
    assert Z.dtype == np.float64
    assert list(vae.get_feature_names_out()) == ["vaetransformer0", "vaetransformer1"]


def test_inverse_transform_is_in_original_units():
    rng = np.random.RandomState(0)
    latent = rng.normal(size=(400, 1))
    X = np.hstack([1000 + 50 * latent, -3 + 0.01 * latent]) + rng.normal(
        scale=[5, 0.001], size=(400, 2)
    )
    vae = VAETransformer(**{**LONGER, "n_components": 1, "max_iter": 150})
    X_back = vae.fit(X).inverse_transform(vae.transform(X))
    assert X_back.shape == X.shape
    # Reconstructions land near the data in its own units, not standardised ones.
    assert np.abs(X_back[:, 0] - X[:, 0]).mean() < 25
    assert np.abs(X_back[:, 1] - X[:, 1]).mean() < 0.005


def test_inverse_transform_rejects_wrong_latent_width(blobs):
    vae = VAETransformer(**FAST).fit(blobs)
    with pytest.raises(ValueError, match="n_components=2"):
        vae.inverse_transform(np.zeros((3, 5)))


def test_sample_is_reproducible_and_looks_like_the_data():
    rng = np.random.RandomState(0)
    X = rng.normal(loc=[10, -5], scale=[2, 0.5], size=(500, 2))
    vae = VAETransformer(**{**LONGER, "max_iter": 100}).fit(X)
    a = vae.sample(2000, random_state=1)
    np.testing.assert_array_equal(a, vae.sample(2000, random_state=1))
    assert not np.array_equal(a, vae.sample(2000, random_state=2))
    np.testing.assert_allclose(a.mean(axis=0), [10, -5], atol=0.5)
    np.testing.assert_allclose(a.std(axis=0), [2, 0.5], rtol=0.35)


def test_sample_rejects_bad_count(blobs):
    vae = VAETransformer(**FAST).fit(blobs)
    with pytest.raises(ValueError, match="n_samples"):
        vae.sample(0)


def test_score_samples_is_a_log_likelihood_bound_in_original_units():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(2000, 3))
    vae = VAETransformer(**LONGER).fit(X)
    # The true log-density of N(0, I) in 3-D averages -3/2 (log 2 pi + 1) = -4.26.
    # A bound sits below it, and a decent fit not far below.
    mean_elbo = vae.score(X)
    assert -5.0 < mean_elbo < -4.26 + 0.05
    # Rescaling the data by 10 shifts log-densities by -3 log 10 nats.
    scaled = VAETransformer(**LONGER)
    assert scaled.fit(10 * X).score(10 * X) == pytest.approx(mean_elbo - 3 * np.log(10), abs=0.05)


def test_constant_column_gives_finite_results():
    rng = np.random.RandomState(0)
    X = np.hstack([rng.normal(size=(100, 2)), np.full((100, 1), 7.0)])
    # 60 epochs: FAST's 20, annealed to a zero step by the default cosine
    # schedule, leave the decoder's constant output about 0.1 short.
    vae = VAETransformer(**{**FAST, "max_iter": 60}).fit(X)
    assert np.all(np.isfinite(vae.transform(X)))
    assert np.all(np.isfinite(vae.score_samples(X)))
    np.testing.assert_allclose(vae.inverse_transform(vae.transform(X))[:, 2], 7.0, atol=0.1)

"""Fit time of VAEAnomalyDetector's defaults with split and cross-conformal calibration.

python benchmarks/cross_conformal_cost.py [--sizes 200 500 1000 2000] [--repeats 1]

Correlated 8-column Gaussian rows; one fit per size and calibration (default
parameters, random_state=0), wall-clock seconds, best of --repeats.
"""

import argparse
import io
import os
import platform
import time
import warnings

import numpy as np
import torch

from skvae import VAEAnomalyDetector


def rows(n, seed=0):
    rng = np.random.RandomState(seed)
    mixing = rng.normal(size=(8, 8)) / np.sqrt(8) + np.eye(8)
    return rng.normal(size=(n, 8)) @ mixing


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 1000, 2000])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    threads = f"torch threads {torch.get_num_threads()}"
    omp = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    print(f"# {machine}, {threads}, {omp}, {time.strftime('%Y-%m-%d %H:%M')}")
    print("rows  split_s  cross_s  ratio  model_kB_split  model_kB_cross")
    for n in args.sizes:
        X = rows(n)
        times, sizes = {}, {}
        for calibration in ("split", "cross"):
            best = np.inf
            for _ in range(args.repeats):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = time.perf_counter()
                    detector = VAEAnomalyDetector(calibration=calibration, random_state=0).fit(X)
                    best = min(best, time.perf_counter() - start)
            times[calibration] = best
            buffer = io.BytesIO()
            detector.save(buffer)
            sizes[calibration] = len(buffer.getvalue()) / 1024
        ratio = times["cross"] / times["split"]
        print(
            f"{n:5d}  {times['split']:7.2f}  {times['cross']:7.2f}  {ratio:5.1f}  "
            f"{sizes['split']:14.0f}  {sizes['cross']:14.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

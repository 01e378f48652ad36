"""The shipped flow-matching prior as a log-prior over H3 cells, so fusion can use it in
place of the histogram photo prior ("fusion+flow"). Built once from samples, then cached."""

from __future__ import annotations

import numpy as np

from avgeo.geo.grid import Grid

N_SAMPLES = 20_000
STEPS = 16
SEED = 0


def flow_prior(grid: Grid, weights_path: str | None = None) -> np.ndarray:
    """log p per cell: a kernel density of samples from the flow prior, with the same
    smoothing and 1 % area floor as the other priors; normalised (logsumexp = 0)."""
    from avgeo.geo.priors import _cached, kde_log_prior, kernel_km

    def build() -> np.ndarray:
        import torch

        from avgeo.precision.manifold import to_latlon
        from avgeo.precision.train import load_flow
        from avgeo.precision.weights import default_prior_path

        model, _meta = load_flow(weights_path or default_prior_path())
        g = torch.Generator().manual_seed(SEED)
        with torch.no_grad():
            xs = model.sample(N_SAMPLES, steps=STEPS, method="rk4", generator=g)
        lat, lon = to_latlon(xs.double())
        return kde_log_prior(grid, lat.numpy(), lon.numpy(), np.ones(N_SAMPLES),
                             kernel_km(grid.res))

    name = "prior-flow" if weights_path is None else f"prior-flow-{abs(hash(weights_path))}"
    return _cached(name, grid, build)

"""Bayesian-optimisation peers for the bench: BoTorch (batch qLogNEI) and SMAC3's black-box facade.

Each follows the bench's ask/tell peer shape (``ask(n_left)``, ``tell(rows, scores)``, ``recommend()``) and
*maximises a score* on [-1, 1]^dim. They are optional extras (``pip install -e ".[bo]"`` in a clone of the
repository); settings that differ from a library's documented defaults are stated beside each class. Optuna's
``GPSampler`` lives with the other Optuna peer in ``peers.py``. HEBO is not here: HEBO 0.3.6 pins ``numpy<1.25``
and ``pymoo==0.6.0``, which cannot be installed beside this package's numpy.
"""

from __future__ import annotations

import warnings

import numpy as np


class BoTorchQLogNEI:
    """BoTorch: ``SingleTaskGP`` (its default kernel, learned noise, inputs normalised to the unit cube and outcomes
    standardised, as BoTorch's tutorials do) refitted each batch by ``fit_gpytorch_mll``, and
    ``qLogNoisyExpectedImprovement`` optimised by ``optimize_acqf`` for a batch of q = 2·dim points (a population
    evaluated in parallel, as EvoGM asks), 10 restarts from 256 raw samples. The first batch is a scrambled Sobol
    design of q points. Recommends the evaluated point with the best posterior mean (the noise-aware choice
    BoTorch's tutorials use), not the luckiest observation.
    """

    def __init__(self, dim: int, seed: int, budget: int) -> None:
        import torch

        self.dim, self.seed, self.q = dim, seed, 2 * dim
        self.x = np.empty((0, dim))
        self.y = np.empty(0)
        self._generator = torch.Generator().manual_seed(seed)
        self._model = None

    def ask(self, n_left: int) -> np.ndarray:
        import torch
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.optim import optimize_acqf
        from botorch.sampling import SobolQMCNormalSampler
        from torch.quasirandom import SobolEngine

        q = min(self.q, n_left)
        if len(self.y) == 0:
            sobol = SobolEngine(self.dim, scramble=True, seed=self.seed)
            return (2.0 * sobol.draw(q, dtype=torch.float64) - 1.0).numpy()
        model = self._fit()
        bounds = torch.stack([-torch.ones(self.dim), torch.ones(self.dim)]).double()
        acquisition = qLogNoisyExpectedImprovement(
            model,
            X_baseline=torch.as_tensor(self.x),
            sampler=SobolQMCNormalSampler(torch.Size([128]), seed=self.seed * 1000 + len(self.y)),
            prune_baseline=True,
        )
        with warnings.catch_warnings(), _seeded(self.seed * 1000 + len(self.y)):
            warnings.simplefilter("ignore")
            candidates, _ = optimize_acqf(acquisition, bounds=bounds, q=q, num_restarts=10, raw_samples=256)
        return np.clip(candidates.detach().numpy(), -1.0, 1.0)

    def tell(self, x: np.ndarray, scores: np.ndarray) -> None:
        self.x = np.concatenate([self.x, np.asarray(x, dtype=float)])
        self.y = np.concatenate([self.y, np.asarray(scores, dtype=float)])
        self._model = None

    def recommend(self) -> np.ndarray:
        import torch

        finite = np.isfinite(self.y)
        if finite.sum() < 2:
            return self.x[int(np.nanargmax(self.y))] if finite.any() else self.x[0]
        model = self._fit()  # outside no_grad: fitting needs gradients
        with torch.no_grad():
            mean = model.posterior(torch.as_tensor(self.x[finite])).mean.squeeze(-1).numpy()
        return self.x[finite][int(np.argmax(mean))]

    def _fit(self):
        if self._model is not None:
            return self._model
        import torch
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.input import Normalize
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        finite = np.isfinite(self.y)
        y = np.where(finite, self.y, np.nanmin(self.y[finite]) if finite.any() else 0.0)  # failures ranked worst
        box = torch.stack([-torch.ones(self.dim), torch.ones(self.dim)]).double()
        model = SingleTaskGP(
            torch.as_tensor(self.x),
            torch.as_tensor(y).unsqueeze(-1),
            input_transform=Normalize(d=self.dim, bounds=box),  # the GP sees the unit cube, as BoTorch expects
            outcome_transform=Standardize(m=1),
        )
        with warnings.catch_warnings(), _seeded(self.seed + len(self.y)):
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        self._model = model
        return model


class _seeded:
    """torch's global RNG (which BoTorch's restarts draw from) seeded for a block, and put back afterwards."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        import torch

        self._state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.random.set_rng_state(self._state)


class SMACBlackBox:
    """SMAC3's ``BlackBoxFacade`` (a GP with a Matérn kernel and expected improvement; its default initial design
    and settings), through SMAC's ask/tell interface, one trial at a time, deterministic objective, no output
    directory kept. Recommends SMAC's incumbent (the best observed configuration).
    """

    def __init__(self, dim: int, seed: int, budget: int) -> None:
        import logging
        import tempfile

        from ConfigSpace import ConfigurationSpace, Float
        from smac import BlackBoxFacade, Scenario

        logging.getLogger("smac").setLevel(logging.ERROR)
        self.names = [f"x{i}" for i in range(dim)]
        space = ConfigurationSpace(seed=seed)
        space.add([Float(name, (-1.0, 1.0)) for name in self.names])
        self._folder = tempfile.TemporaryDirectory(prefix="smac-")
        scenario = Scenario(space, deterministic=True, n_trials=budget, seed=seed, output_directory=self._folder.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.smac = BlackBoxFacade(scenario, lambda config, seed=0: 0.0, overwrite=True, logging_level=40)
        self._info = None

    def ask(self, n_left: int) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._info = self.smac.ask()
        return np.array([[float(self._info.config[name]) for name in self.names]])

    def tell(self, x: np.ndarray, scores: np.ndarray) -> None:
        from smac.runhistory.dataclasses import TrialValue

        cost = -float(scores[0]) if np.isfinite(scores[0]) else float("inf")  # SMAC minimises a cost
        self.smac.tell(self._info, TrialValue(cost=cost))

    def recommend(self) -> np.ndarray:
        incumbent = self.smac.intensifier.get_incumbent()
        return np.array([float(incumbent[name]) for name in self.names])

"""A small BoTorch GP helper shared by TRADE and AutoKD: Matern-5/2 ARD, warm-started refits."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch

DTYPE = torch.float64


@contextlib.contextmanager
def one_thread():
    """Small GPs (n <= a few hundred) run fastest on one thread, and far faster on a busy machine."""
    n = torch.get_num_threads()
    if n != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n != 1:
            torch.set_num_threads(n)


class GP:
    """``fit(X, y)`` then ``thompson(Xc, rng)`` / ``log_ei(Xc)`` over candidate rows.

    Targets are standardised here (not by an outcome transform) so that the kernel hyperparameters
    of the last fit can be kept when the data grows. They are re-optimised (L-BFGS, ``maxiter``
    iterations, warm-started) whenever the data has doubled (``refit_growth``) since the last
    optimisation, and at least every ``refit_every`` points; in between only the data is swapped.
    """

    def __init__(self, refit_every: int = 50, maxiter: int = 30, refit_growth: float = 1.0):
        self.refit_every, self.maxiter, self.refit_growth = refit_every, maxiter, refit_growth
        self.calls = 0
        self.fitted_at = 0
        self.model = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        with one_thread():
            self._fit(X, y)

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.kernels import MaternKernel, ScaleKernel
        from gpytorch.mlls import ExactMarginalLogLikelihood
        from gpytorch.priors import GammaPrior

        Xt = torch.as_tensor(np.asarray(X), dtype=DTYPE)
        y = np.asarray(y, dtype=float)
        self.mu, self.sd = float(y.mean()), float(y.std()) or 1.0
        Yt = torch.as_tensor((y - self.mu) / self.sd, dtype=DTYPE).unsqueeze(-1)
        n = len(y)
        refit = (
            self.model is None
            or n >= self.fitted_at * (1 + self.refit_growth)
            or n - self.fitted_at >= self.refit_every
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.model is None:
                d = Xt.shape[-1]
                covar = ScaleKernel(
                    MaternKernel(nu=2.5, ard_num_dims=d, lengthscale_prior=GammaPrior(3.0, 6.0)),
                    outputscale_prior=GammaPrior(2.0, 0.15),
                )
                self.model = SingleTaskGP(Xt, Yt, covar_module=covar, outcome_transform=None)
            else:  # keep the hyperparameters, swap the data (no module rebuild)
                self.model.set_train_data(Xt, Yt.squeeze(-1), strict=False)
            if refit:
                state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                mll = ExactMarginalLogLikelihood(self.model.likelihood, self.model)
                try:
                    fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": self.maxiter}})
                except Exception:  # a failed fit keeps the previous hyperparameters
                    self.model.load_state_dict(state)
                self.fitted_at = n
        self.model.eval()
        with torch.no_grad(), one_thread():
            self._cache()
        self.best = float(Yt.max())
        self.calls += 1

    def _cache(self) -> None:
        m = self.model
        X, y = m.train_inputs[0], m.train_targets
        K = m.covar_module(X).to_dense() + m.likelihood.noise * torch.eye(len(X), dtype=DTYPE)
        jitter = 1e-8
        while True:
            L, info = torch.linalg.cholesky_ex(K + jitter * torch.eye(len(X), dtype=DTYPE))
            if int(info) == 0 or jitter > 1:
                break
            jitter *= 100
        self.L = L
        self.alpha = torch.cholesky_solve((y - m.mean_module(X)).unsqueeze(-1), L)

    def predict(self, Xc: np.ndarray, full_cov: bool = False):
        """Posterior mean and variance (or covariance) of the standardised objective at ``Xc``.

        The exact GP equations with the fitted BoTorch model's kernel, mean and noise, written out
        with one Cholesky per fit: GPyTorch's generic path builds the full candidate covariance even
        for the variances, which costs more than the whole search.
        """
        with torch.no_grad(), one_thread():
            m = self.model
            Xt = torch.as_tensor(np.asarray(Xc), dtype=DTYPE)
            Kc = m.covar_module(Xt, m.train_inputs[0]).to_dense()
            mean = m.mean_module(Xt) + (Kc @ self.alpha).squeeze(-1)
            v = torch.linalg.solve_triangular(self.L, Kc.T, upper=False)
            if full_cov:
                return mean, m.covar_module(Xt).to_dense() - v.T @ v
            return mean, (m.covar_module(Xt, diag=True) - (v * v).sum(0)).clamp_min(1e-12)

    def thompson(self, Xc: np.ndarray, rng: np.random.Generator) -> int:
        """Row of ``Xc`` maximising one joint posterior sample."""
        with torch.no_grad(), one_thread():
            mean, cov = self.predict(Xc, full_cov=True)
            eye = torch.eye(len(mean), dtype=DTYPE)
            jitter = 1e-6
            for _ in range(5):
                L, info = torch.linalg.cholesky_ex(cov + jitter * eye)
                if int(info) == 0:
                    break
                jitter *= 100
            z = torch.as_tensor(rng.standard_normal(len(mean)), dtype=DTYPE)
            sample = mean + L @ z
        return int(torch.argmax(sample))

    def log_ei(self, Xc: np.ndarray) -> np.ndarray:
        """Log expected improvement over the best standardised observation (BoTorch's stable form)."""
        from botorch.acquisition.analytic import _log_ei_helper

        with torch.no_grad(), one_thread():
            mean, var = self.predict(Xc)
            sd = var.sqrt()
            return (_log_ei_helper((mean - self.best) / sd) + sd.log()).numpy()

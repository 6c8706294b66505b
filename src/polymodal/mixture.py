r"""A Gaussian mixture fitted by EM to incomplete rows (Ghahramani & Jordan, 1994).

The model of a row x in R^p is p(x) = \sum_k \pi_k N(x; \mu_k, \Sigma_k). With x_o observed
and x_u missing, every quantity the imputer needs is closed form:

    p(x_o)             = \sum_k \pi_k N(x_o; \mu_{k,o}, \Sigma_{k,oo})
    r_k(x_o)           = \pi_k N(x_o; \mu_{k,o}, \Sigma_{k,oo}) / p(x_o)
    E_k[x_u | x_o]     = \mu_{k,u} + \Sigma_{k,uo} \Sigma_{k,oo}^{-1} (x_o - \mu_{k,o})
    Cov_k[x_u | x_o]   = \Sigma_{k,uu} - \Sigma_{k,uo} \Sigma_{k,oo}^{-1} \Sigma_{k,ou}
    E[x_u | x_o]       = \sum_k r_k(x_o) E_k[x_u | x_o]

EM maximises the likelihood of the observed cells alone: the E-step takes each row's
responsibilities and, per component, the conditional mean and covariance of its missing
cells; the M-step sets \pi_k, \mu_k and \Sigma_k from the completed sufficient statistics
(the conditional covariances added to the scatter of the conditional means). It is exact
MCAR/MAR maximum likelihood, not an iterated regression.

``ridge`` adds ridge x Var(x_j) to each component's diagonal after every M-step (a
scale-free MAP prior that keeps a component of few rows, or a column that is a linear
function of others, invertible). One component is the classical EM imputation of a
multivariate normal (R's ``norm``, Amelia without the bootstrap).

Rows are handled in one batch: per row, the observed block \Sigma_{oo} is embedded in a
p x p matrix with ones on the diagonal of the missing cells, so its Cholesky factor gives
\Sigma_{oo}^{-1} and log|\Sigma_{oo}| for rows of any pattern at once. The E-step never
forms the rows' conditional covariances, only their weighted sum (see ``_expect``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .data import DataError
from .progress import bar


class GaussianMixture:
    """``components`` Gaussians with full covariances, fitted by EM (at most ``iters`` steps,
    until the mean log-likelihood per row changes by less than ``tol``; with a ridge, EM
    climbs the penalised likelihood, so the plain one may fall) to an array with NaN for
    missing cells. ``seed`` seeds the k-means start of several components; ``progress``
    shows a bar counting EM steps."""

    def __init__(self, components: int = 1, ridge: float = 0.01, iters: int = 100, tol: float = 1e-3,
                 seed: int = 0, device: str | torch.device = "cpu", progress: bool = False):
        self.components, self.ridge, self.iters, self.tol = components, ridge, iters, tol
        self.seed, self.device, self.progress = seed, torch.device(device), progress

    def fit(self, x: np.ndarray, start: GaussianMixture | None = None) -> GaussianMixture:
        """EM from ``start``'s parameters (a mixture of as many components fitted to the same
        table, say with another ridge: fewer steps), else from the column means and k-means."""
        x = self._tensor(x, fitting=True)
        observed = ~torch.isnan(x)
        mean = torch.nan_to_num(torch.nanmean(x, 0))
        var = torch.nan_to_num(torch.nanmean((x - mean) ** 2, 0))
        self.scale_ = torch.where(var > 0, var, torch.ones_like(var))
        if start is not None:
            self.weights_, self.means_, self.covariances_ = start.weights_, start.means_, start.covariances_
        else:
            filled = torch.where(observed, x, mean)
            members = self._start(filled)  # hard k-means responsibilities [K, n]
            self._maximise(members.sum(1), members @ filled, torch.einsum("kn,np,nq->kpq", members, filled, filled))
        self.log_likelihoods_ = []
        steps = bar(self.iters, f"EM ({self.components} components)", "step", self.progress)
        for _ in range(self.iters):
            statistics, log_p = self._expect(x)
            self._maximise(*statistics)
            self.log_likelihoods_.append(log_p / len(x))
            steps.update()
            if len(self.log_likelihoods_) > 1 and abs(self.log_likelihoods_[-1] - self.log_likelihoods_[-2]) < self.tol:
                break
        steps.close()
        return self

    def _start(self, filled: Tensor) -> Tensor:
        if self.components == 1:
            return torch.ones(1, len(filled), dtype=filled.dtype, device=filled.device)
        from sklearn.cluster import KMeans

        labels = KMeans(self.components, n_init=1, random_state=self.seed).fit_predict(filled.cpu().numpy())
        return torch.nn.functional.one_hot(torch.as_tensor(labels).long(), self.components).T.to(filled)

    def _expect(self, x: Tensor) -> tuple[tuple[Tensor, Tensor, Tensor], float]:
        r"""E-step: the completed sufficient statistics of all rows, and the sum of log p(x_o).
        The rows' conditional covariances enter only through their weighted sum,
        \sum_n r_nk Cov_k[x | x_o^n] = N_k \Sigma_k - \Sigma_k (\sum_n r_nk P_n) \Sigma_k with P_n the
        embedded \Sigma_{oo}^{-1} of row n, so no [K, n, p, p] product is formed."""
        totals, log_p = None, 0.0
        for rows in self._chunks(len(x)):
            members, means, inverse, log_p_rows = self._condition(x[rows])
            missing = torch.isnan(x[rows]).to(x.dtype)
            precision = torch.einsum("kn,knpq->kpq", members, inverse) - torch.diag_embed(members @ missing)
            counts, first = members.sum(1), torch.einsum("kn,knp->kp", members, means)
            second = torch.einsum("kn,knp,knq->kpq", members, means, means)
            second = second + counts[:, None, None] * self.covariances_ - self.covariances_ @ precision @ self.covariances_
            part = (counts, first, second)
            totals = part if totals is None else tuple(a + b for a, b in zip(totals, part))
            log_p += float(log_p_rows.sum())
        return totals, log_p

    def _maximise(self, counts: Tensor, first: Tensor, second: Tensor) -> None:
        """M-step: weights, means and ridged covariances from the sufficient statistics."""
        counts = counts + 1e-10
        self.weights_ = counts / counts.sum()
        self.means_ = first / counts[:, None]
        covariances = second / counts[:, None, None] - self.means_[:, :, None] * self.means_[:, None, :]
        self.covariances_ = (covariances + covariances.transpose(1, 2)) / 2 + torch.diag(self.ridge * self.scale_)

    def _condition(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""Per component and row: responsibilities [K, n], the row completed by its conditional
        mean [K, n, p], the inverse of the embedded \Sigma_{oo} [K, n, p, p] (\Sigma_{oo}^{-1} on
        the observed cells, the identity on the missing ones: callers subtract that identity
        where it matters, which is cheaper than one more pass over [K, n, p, p]), and log p(x_o)
        per row [n]."""
        observed = ~torch.isnan(x)
        o = observed.to(x.dtype)
        centred = (torch.where(observed, x, 0.0) - self.means_[:, None]) * o
        embedded = self.covariances_[:, None] * (o[:, :, None] * o[:, None, :])
        embedded.diagonal(dim1=-2, dim2=-1).add_(1 - o)
        factor = torch.linalg.cholesky(embedded)
        inverse = torch.cholesky_inverse(factor)
        solved = (inverse @ centred[..., None])[..., 0]  # the identity block meets zeros of centred
        means = torch.where(observed, x, self.means_[:, None] + torch.einsum("kpq,knq->knp", self.covariances_, solved))
        log_det = 2 * torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)
        joint = torch.log(self.weights_)[:, None] - 0.5 * (
            log_det + (centred * solved).sum(-1) + o.sum(-1) * math.log(2 * math.pi))
        log_p = torch.logsumexp(joint, 0)
        return torch.exp(joint - log_p), means, inverse, log_p

    def _conditional_covariance(self, inverse: Tensor, missing: Tensor) -> Tensor:
        r"""Cov_k[x | x_o] per row [K, n, p, p]: \Sigma - \Sigma P \Sigma, zero on observed cells."""
        precision = inverse - torch.diag_embed(missing.to(inverse.dtype))
        return self.covariances_[:, None] - self.covariances_[:, None] @ precision @ self.covariances_[:, None]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``x`` with each NaN replaced by E[x_u | x_o]; observed cells as they are."""
        x = self._tensor(x)
        parts = [torch.einsum("kn,knp->np", *self._condition(x[rows])[:2]) for rows in self._chunks(len(x))]
        return torch.cat(parts).cpu().numpy()

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """log p(x_o) of each row, the density of its observed cells."""
        x = self._tensor(x)
        return torch.cat([self._condition(x[rows])[3] for rows in self._chunks(len(x))]).cpu().numpy()

    def sample(self, x: np.ndarray, draws: int, seed: int = 0) -> np.ndarray:
        """``draws`` imputations of ``x`` [draws, n, p] from p(x_u | x_o): per row and draw a
        component k ~ r(x_o), then x_u ~ N(E_k[x_u | x_o], Cov_k[x_u | x_o])."""
        x = self._tensor(x)
        generator = torch.Generator(self.device).manual_seed(seed)
        return torch.cat([self._sample(x[rows], draws, generator) for rows in self._chunks(len(x))], 1).cpu().numpy()

    def _sample(self, x: Tensor, draws: int, generator: torch.Generator) -> Tensor:
        members, means, inverse, _ = self._condition(x)
        missing = torch.isnan(x)
        covariance = self._conditional_covariance(inverse, missing)
        jitter = 1e-9 * torch.diag(self.scale_)
        roots = torch.linalg.cholesky(covariance + torch.diag_embed((~missing).to(x.dtype)) + jitter)  # [K, n, p, p]
        picks = torch.multinomial(members.T, draws, replacement=True, generator=generator).T  # [draws, n]
        rows = torch.arange(len(x), device=x.device)
        noise = torch.randn(draws, *x.shape, dtype=x.dtype, device=x.device, generator=generator)
        out = means[picks, rows] + (roots[picks, rows] @ noise[..., None])[..., 0]
        return torch.where(missing, out, x)

    def state(self) -> dict[str, Tensor]:
        return {"weights": self.weights_, "means": self.means_, "covariances": self.covariances_, "scale": self.scale_}

    @classmethod
    def from_state(cls, state: dict[str, Tensor], device: str | torch.device = "cpu", **options) -> GaussianMixture:
        mixture = cls(components=len(state["weights"]), device=device, **options)
        for name in ("weights", "means", "covariances", "scale"):
            setattr(mixture, f"{name}_", state[name].to(device=mixture.device, dtype=torch.float64))
        return mixture

    def _chunks(self, n: int) -> list[slice]:
        """Row slices small enough that the per-row [K, rows, p, p] matrices stay near 32 MB."""
        size = max(1, 2**22 // (self.components * self.scale_.numel() ** 2))
        return [slice(i, min(i + size, n)) for i in range(0, n, size)]

    def _tensor(self, x: np.ndarray, fitting: bool = False) -> Tensor:
        try:
            values = np.array(x, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise DataError(f"GaussianMixture: expected numbers (NaN for missing), got {error}") from None
        if values.ndim != 2:
            raise DataError(f"GaussianMixture: expected a 2-D array [rows, columns], got shape {values.shape}")
        if fitting:
            empty = np.flatnonzero(np.isnan(values).all(0))
            if len(empty):
                raise DataError(f"GaussianMixture: column(s) {empty.tolist()} have no observed cell to fit")
            if len(values) < self.components:
                raise DataError(f"GaussianMixture: {self.components} components need at least as many rows, "
                                f"got {len(values)}")
        elif values.shape[1] != self.means_.shape[1]:
            raise DataError(f"GaussianMixture: fitted on {self.means_.shape[1]} columns, got {values.shape[1]}")
        return torch.as_tensor(values, device=self.device)

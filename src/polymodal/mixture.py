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

Rows are handled through each component's precision \Lambda = \Sigma^{-1}, so a row costs
the factorisation of its *missing* block, not of its observed one:

    E_k[x_u | x_o]     = \mu_u - \Lambda_{uu}^{-1} \Lambda_{uo} (x_o - \mu_o)
    Cov_k[x_u | x_o]   = \Lambda_{uu}^{-1}
    log|\Sigma_{oo}|   = log|\Sigma| + log|\Lambda_{uu}|
    (x_o - \mu_o)' \Sigma_{oo}^{-1} (x_o - \mu_o) = d' \Lambda d,  d the row completed by its conditional mean, minus \mu

Rows with the same number m of missing cells are batched: their \Lambda_{uu} blocks are
gathered into ``[K, rows, m, m]`` and factorised at once. With a fifth of p cells missing
this is (1/5)^3 of the work of factorising \Sigma_{oo}, and rows without a missing cell
need no factorisation at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

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
        r"""E-step: the completed sufficient statistics of all rows, and the sum of log p(x_o):
        \sum_n r_nk, \sum_n r_nk E_k[x | x_o^n] and \sum_n r_nk (E_k[x | x_o^n] E_k[x | x_o^n]' + Cov_k[x | x_o^n]),
        each row's conditional covariance \Lambda_{uu}^{-1} added into its missing block only."""
        k, p = self.means_.shape
        counts = torch.zeros(k, dtype=x.dtype, device=x.device)
        first = torch.zeros(k, p, dtype=x.dtype, device=x.device)
        second = torch.zeros(k, p * p, dtype=x.dtype, device=x.device)
        log_p = 0.0
        for _, missing, factor, completed, joint in self._blocks(x):
            total = torch.logsumexp(joint, 0)
            members = torch.exp(joint - total)  # [K, rows]
            log_p += float(total.sum())
            counts += members.sum(1)
            first += torch.einsum("kn,knp->kp", members, completed)
            second += torch.einsum("kn,knp,knq->kpq", members, completed, completed).reshape(k, -1)
            if missing.shape[1]:
                spread = members[:, :, None, None] * torch.cholesky_inverse(factor)  # [K, rows, m, m]
                cells = (missing[:, :, None] * p + missing[:, None, :]).reshape(-1)
                second.index_add_(1, cells, spread.reshape(k, -1))
        return (counts, first, second.reshape(k, p, p)), log_p

    def _maximise(self, counts: Tensor, first: Tensor, second: Tensor) -> None:
        """M-step: weights, means and ridged covariances from the sufficient statistics."""
        counts = counts + 1e-10
        self.weights_ = counts / counts.sum()
        self.means_ = first / counts[:, None]
        covariances = second / counts[:, None, None] - self.means_[:, :, None] * self.means_[:, None, :]
        self.covariances_ = (covariances + covariances.transpose(1, 2)) / 2 + torch.diag(self.ridge * self.scale_)

    def _blocks(self, x: Tensor) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
        r"""The rows of ``x`` in blocks of rows with the same number m of missing cells: per block,
        the rows' positions [rows], their missing columns [rows, m], per component the Cholesky
        factor of \Lambda_{uu} [K, rows, m, m], the rows completed by their conditional means
        [K, rows, p] and log \pi_k + log N(x_o; \mu_{k,o}, \Sigma_{k,oo}) [K, rows]."""
        factor = torch.linalg.cholesky(self.covariances_)
        precision = torch.cholesky_inverse(factor)  # [K, p, p]
        log_det = 2 * torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)  # log|\Sigma_k|
        log_weights = torch.log(self.weights_)
        for rows in self._chunks(len(x)):
            part = x[rows]
            observed = ~torch.isnan(part)
            count = (~observed).sum(1)
            for m in torch.unique(count).tolist():
                where = torch.nonzero(count == m)[:, 0]
                values, seen = part[where], observed[where]
                centred = torch.where(seen, values, self.means_[:, None]) - self.means_[:, None]  # [K, rows, p], 0 where missing
                missing = torch.argsort(seen.to(torch.int8), dim=1, stable=True)[:, :m]  # [rows, m]
                completed = centred
                uu = torch.empty(0)
                log_det_uu = torch.zeros(len(where), dtype=x.dtype, device=x.device)
                if m:
                    uu = torch.linalg.cholesky(precision[:, missing[:, :, None], missing[:, None, :]])  # [K, rows, m, m]
                    pull = torch.einsum("kpq,knq->knp", precision, centred)  # (\Lambda d_o)_u = \Lambda_{uo} d_o
                    shift = -torch.cholesky_solve(pull.gather(2, missing.expand(len(self.means_), -1, -1))[..., None], uu)[..., 0]
                    completed = centred.scatter(2, missing.expand(len(self.means_), -1, -1), shift)
                    log_det_uu = 2 * torch.log(torch.diagonal(uu, dim1=-2, dim2=-1)).sum(-1)
                quadratic = torch.einsum("knp,kpq,knq->kn", completed, precision, completed)
                cells = seen.sum(1).to(x.dtype)
                joint = log_weights[:, None] - 0.5 * (log_det[:, None] + log_det_uu + quadratic + cells * math.log(2 * math.pi))
                yield rows.start + where, missing, uu, completed + self.means_[:, None], joint

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``x`` with each NaN replaced by E[x_u | x_o]; observed cells as they are."""
        x = self._tensor(x)
        out = x.clone()
        for rows, _, _, completed, joint in self._blocks(x):
            out[rows] = torch.einsum("kn,knp->np", torch.softmax(joint, 0), completed)
        return torch.where(torch.isnan(x), out, x).cpu().numpy()

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """log p(x_o) of each row, the density of its observed cells."""
        x = self._tensor(x)
        out = torch.empty(len(x), dtype=x.dtype, device=x.device)
        for rows, _, _, _, joint in self._blocks(x):
            out[rows] = torch.logsumexp(joint, 0)
        return out.cpu().numpy()

    def sample(self, x: np.ndarray, draws: int, seed: int = 0) -> np.ndarray:
        r"""``draws`` imputations of ``x`` [draws, n, p] from p(x_u | x_o): per row and draw a
        component k ~ r(x_o), then x_u ~ N(E_k[x_u | x_o], \Lambda_{k,uu}^{-1}), drawn as
        E_k[x_u | x_o] + L^{-T} e with \Lambda_{k,uu} = L L' and e standard normal."""
        x = self._tensor(x)
        generator = torch.Generator(self.device).manual_seed(seed)
        out = x.expand(draws, -1, -1).clone()
        for rows, missing, factor, completed, joint in self._blocks(x):
            picks = torch.multinomial(torch.softmax(joint, 0).T, draws, replacement=True, generator=generator).T
            index = torch.arange(len(rows), device=x.device)
            drawn = completed[picks, index]  # [draws, rows, p]
            if missing.shape[1]:
                noise = torch.randn(draws, len(rows), missing.shape[1], 1, dtype=x.dtype, device=x.device,
                                    generator=generator)
                spread = torch.linalg.solve_triangular(factor[picks, index].transpose(-2, -1), noise, upper=True)[..., 0]
                drawn = drawn.scatter_add(2, missing.expand(draws, -1, -1), spread)
            out[:, rows] = drawn
        return torch.where(torch.isnan(x), out, x).cpu().numpy()

    def state(self) -> dict[str, Tensor]:
        return {"weights": self.weights_, "means": self.means_, "covariances": self.covariances_, "scale": self.scale_}

    @classmethod
    def from_state(cls, state: dict[str, Tensor], device: str | torch.device = "cpu", **options) -> GaussianMixture:
        mixture = cls(components=len(state["weights"]), device=device, **options)
        for name in ("weights", "means", "covariances", "scale"):
            setattr(mixture, f"{name}_", state[name].to(device=mixture.device, dtype=torch.float64))
        return mixture

    def _chunks(self, n: int) -> list[slice]:
        """Row slices small enough that the per-row [K, rows, p] tensors stay near 32 MB."""
        size = max(1, 2**22 // (16 * self.components * self.scale_.numel()))
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

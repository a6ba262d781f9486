"""Real Clebsch–Gordan coefficients and the coupling of two equivariants into one of order λ.

The coefficients are featomic's (real spherical harmonics, m = -l..l, l=1 ∝ (y, z, x)), so a
coupled product rotates exactly like featomic's features. ``C[m1, m2, μ]`` for fixed (l1, l2)
stacked over λ = |l1-l2|..l1+l2 is an orthogonal matrix: coupling is exactly invertible.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["real_clebsch_gordan", "parity_sigma", "ProductPlan", "ProductTerm"]


@cache
def _cg_table(lambda_max: int) -> dict[tuple[int, int, int], np.ndarray]:
    from featomic.clebsch_gordan import calculate_cg_coefficients

    table = calculate_cg_coefficients(lambda_max, "python-dense", "numpy", np.float64, "cpu")
    return {
        tuple(int(v) for v in key.values): np.ascontiguousarray(block.values[0, ..., 0]) for key, block in table.items()
    }


def real_clebsch_gordan(l1: int, l2: int, lam: int) -> np.ndarray:
    """Coefficients ``C[m1, m2, μ]`` (shape (2l1+1, 2l2+1, 2λ+1)) coupling l1 ⊗ l2 → λ."""
    if not abs(l1 - l2) <= lam <= l1 + l2:
        raise ValueError(f"λ={lam} is not in |l1-l2|..l1+l2 for l1={l1}, l2={l2}")
    # featomic tabulates l1, l2, λ ≤ lambda_max; one table per bound keeps the cache small
    return _cg_table(max(l1, l2, lam))[(l1, l2, lam)]


def parity_sigma(l1: int, l2: int, lam: int) -> int:
    """σ of the coupled block: it picks up σ·(-1)^λ under inversion when l1 ⊗ l2 pick up (-1)^(l1+l2)."""
    return 1 if (l1 + l2 + lam) % 2 == 0 else -1


class ProductTerm(NamedTuple):
    l1: int
    l2: int
    lam: int
    sigma: int


class ProductPlan:
    """All Clebsch–Gordan products x^{l1} ⊗ y^{l2} → λ ≤ ``max_lambda`` for a list of (l1, l2).

    The first factor comes with all its l concatenated ([n_x, (L+1)², p], m = -l..l for l = 0..L);
    for each l2, one matrix product couples it with every l1 and λ at once (on the rows of x, which
    may be fewer than the output rows: atoms versus pairs), the rows are then gathered, and one
    batched product contracts m2 with y^{l2}. This replaces a pair of small einsums per (l1, l2, λ)
    and their copies; the results are views, to be copied once into their final place.
    """

    def __init__(self, pairs: list[tuple[int, int]], max_lambda: int, max_angular: int):
        self.terms: list[ProductTerm] = []
        self._plans = []
        width = (max_angular + 1) ** 2
        for l2 in sorted({l2 for _, l2 in pairs}):
            blocks, slices = [], []
            offset = 0
            for l1 in sorted(l1 for l1, other in pairs if other == l2):
                for lam in range(abs(l1 - l2), min(l1 + l2, max_lambda) + 1):
                    block = np.zeros((width, 2 * l2 + 1, 2 * lam + 1))
                    block[l1 * l1 : (l1 + 1) ** 2] = real_clebsch_gordan(l1, l2, lam)
                    blocks.append(block)
                    slices.append(slice(offset, offset + 2 * lam + 1))
                    offset += 2 * lam + 1
                    self.terms.append(ProductTerm(l1, l2, lam, parity_sigma(l1, l2, lam)))
            if blocks:
                # rows (m2, output component), columns: the concatenated m of x
                stacked = np.concatenate(blocks, axis=2).transpose(1, 2, 0).reshape(-1, width)
                self._plans.append((l2, offset, torch.from_numpy(np.ascontiguousarray(stacked)), slices))

    def prepare(self, x: torch.Tensor) -> list[torch.Tensor]:
        """First half of every product: x coupled with the Clebsch–Gordan coefficients, one tensor
        [n_x, 2l2+1, n_out · p] per l2 (rows of x, e.g. atoms; reusable for any subset of output rows)."""
        n_x, _, p = x.shape
        return [torch.matmul(cg.to(x.dtype), x).reshape(n_x, 2 * l2 + 1, n_out * p) for l2, n_out, cg, _ in self._plans]

    def __call__(
        self,
        x: torch.Tensor,
        ys: list[torch.Tensor],
        rows: torch.Tensor | None = None,
        halves: list[torch.Tensor] | None = None,
    ):
        """Yield the products [n, 2λ+1, q, p] in ``self.terms`` order (lazily: one l2 in memory at a
        time); ``ys[l2]`` is [n, 2l2+1, q], ``rows`` the row of x for each output row (None: same rows),
        ``halves`` the output of :meth:`prepare` for x if already computed."""
        p = x.shape[2]
        if halves is None:
            halves = self.prepare(x)
        for half, (l2, n_out, _, slices) in zip(halves, self._plans):
            if rows is not None:
                half = half[rows]
            y = ys[l2]
            # [n, q, m2] @ [n, m2, out·p]: the long dimension last is ~2x faster than the transpose
            product = torch.bmm(y.transpose(1, 2), half).reshape(len(y), y.shape[2], n_out, p)
            for part in slices:
                # [n, 2λ+1, q, p]: p stays the contiguous axis, so copying the result is cheap
                yield product[:, :, part].transpose(1, 2)

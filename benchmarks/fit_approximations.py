"""Fit the coefficients of the nonlinearity approximations in `secmoe_jax.approx`.

Offline and deterministic: run it, paste the printed constants into
`secmoe_jax/approx/_tables.py` and `_fourier.py`, and the printed error table into the docs.
Needs scipy (for `erf` in float64 and the HiGHS linear-programming solver); the library does not.

    python benchmarks/fit_approximations.py

Fits:
  * GeLU, six segments (SecMoE Protocol 2), breakpoints (-5, -3, -1, 1, 3):
    0 | P1 | P2 | P3 | P4 | x with quadratic P_i. Each P_i minimises the mean absolute error on
    its segment subject to a maximum absolute error of at most `CAP` (a linear program). With
    CAP = 8e-3 this keeps the max error well below SecMoE's 1.2e-2 and the mean below 1.7e-3.
  * SiLU, six segments, breakpoints (-7.5, -1.5, 0, 1.5, 7.5): the best symmetric layout
    (-a, -b, 0, b, a) on a half-unit grid, scored by the max error of least-squares pieces
    (`choose_silu_breakpoints`; a wider search over all layouts found the same one); then the
    same linear program and cap as for GeLU.
  * GeLU, PUMA layout: 0 | cubic on [-4, -1.95) | degree 6 on [-1.95, 3) | x; least squares.
  * erf for the SecFormer-style GeLU: sum_k beta_k sin(2 pi k u / PERIOD), k = 1..K, least
    squares on [-2.5, 2.5] (the basis is odd, so [0, 2.5] suffices). PERIOD = 8 is a power of
    two, so that in fixed point with 16 fractional bits the reduction modulo PERIOD is modulo
    2^19 and exact; PERIOD >= 16 makes the least-squares problem ill-conditioned (sum |beta_k|
    in the hundreds or millions), which would amplify fixed-point rounding.

Errors are measured on uniform grids: GeLU on [-6, 6] (120001 points), SiLU on [-10, 10]
(200001 points), the sine-series GeLU on [-8, 8] (160001 points).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linprog
from scipy.special import erf

CAP = 8e-3
FRAC_BITS = 16
GELU_GRID = np.linspace(-6.0, 6.0, 120001)
SILU_GRID = np.linspace(-10.0, 10.0, 200001)
SECFORMER_GRID = np.linspace(-8.0, 8.0, 160001)
FOURIER_PERIOD = 8.0
FOURIER_TERMS = 7
SATURATION = 2.5
PUBLISHED_BETA = (1.25772, -0.0299154, 0.382155, -0.0519123, 0.196033, -0.0624557, 0.118029)


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def fit_capped_l1(f, lo: float, hi: float, degree: int, cap: float, n: int = 2001) -> np.ndarray:
    """Minimise sum |p(x_i) - f(x_i)| subject to |p(x_i) - f(x_i)| <= cap on a uniform grid."""
    x = np.linspace(lo, hi, n)
    v = np.vander(x, degree + 1, increasing=True)
    y = f(x)
    eye = np.eye(n)
    a_ub = np.block([[v, -eye], [-v, -eye]])
    b_ub = np.concatenate([y, -y])
    cost = np.concatenate([np.zeros(degree + 1), np.ones(n)])
    bounds = [(None, None)] * (degree + 1) + [(0.0, cap)] * n
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"capped L1 fit on [{lo}, {hi}] failed: {res.message}")
    return res.x[: degree + 1]


def fit_lstsq(f, lo: float, hi: float, degree: int, n: int = 20001) -> np.ndarray:
    x = np.linspace(lo, hi, n)
    v = np.vander(x, degree + 1, increasing=True)
    return np.linalg.lstsq(v, f(x), rcond=None)[0]


def eval_piecewise(breakpoints, table: np.ndarray, x: np.ndarray) -> np.ndarray:
    seg = np.searchsorted(np.asarray(breakpoints), x, side="right")  # x >= b_i -> segment i + 1
    c = table[seg]
    return sum(c[:, j] * x**j for j in range(table.shape[1]))


def pad(rows, degree: int) -> np.ndarray:
    return np.array([list(r) + [0.0] * (degree + 1 - len(r)) for r in rows], dtype=np.float64)


def fourier_erf(beta, period: float, u: np.ndarray, saturation: float = SATURATION):
    k = np.arange(1, len(beta) + 1)
    series = np.sin(np.outer(u, k) * (2.0 * np.pi / period)) @ np.asarray(beta)
    return np.where(u < -saturation, -1.0, np.where(u >= saturation, 1.0, series))


def fourier_gelu(beta, period: float, x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + fourier_erf(beta, period, x / math.sqrt(2.0)))


def choose_silu_breakpoints() -> tuple[float, ...]:
    """Grid search over symmetric layouts (-a, -b, 0, b, a), least-squares quadratics."""
    best = None
    for a in np.arange(5.5, 8.01, 0.5):
        for b in np.arange(0.5, 5.01, 0.5):
            br = (-a, -b, 0.0, b, a)
            pieces = [
                tuple(fit_lstsq(silu, lo, hi, 2, n=2001))
                for lo, hi in zip(br[:-1], br[1:], strict=True)
            ]
            t = pad([(0.0,)] + pieces + [(0.0, 1.0)], 2)
            err = np.abs(eval_piecewise(br, t, SILU_GRID[::10]) - silu(SILU_GRID[::10])).max()
            if best is None or err < best[0]:
                best = (err, tuple(float(v) for v in br))
    assert best is not None
    print(f"SiLU breakpoint search: best {best[1]} (least-squares max error {best[0]:.4e})")
    return best[1]


def round_up(v: float, digits: int = 3) -> float:
    """Round a measured error up to `digits` significant digits (the stated contract)."""
    if v == 0.0:
        return 0.0
    e = math.floor(math.log10(abs(v))) - digits + 1
    return float(f"{math.ceil(v / 10.0**e)}e{e}")


def fmt_rows(table: np.ndarray) -> str:
    lines = ["("]
    for row in table:
        lines.append("    (" + ", ".join(repr(float(c)) for c in row) + "),")
    lines.append(")")
    return "\n".join(lines)


def goldschmidt_rsqrt_worst(ratio: float, iters: int) -> float:
    x, y = 1.0 / ratio, 1.0
    x0 = x
    for _ in range(iters):
        m = 0.5 * (3.0 - x)
        x, y = x * m * m, y * m
    return abs(y * math.sqrt(x0) - 1.0)


def goldschmidt_recip_worst(ratio: float, iters: int) -> float:
    return (1.0 - 1.0 / ratio) ** (2**iters)


def main() -> None:
    rows = []  # (name, domain, max, mean)

    # --- GeLU, six segments ---------------------------------------------------------------
    br = (-5.0, -3.0, -1.0, 1.0, 3.0)
    quads = [fit_capped_l1(gelu, a, b, 2, CAP) for a, b in zip(br[:-1], br[1:], strict=True)]
    t = pad([(0.0,)] + [tuple(q) for q in quads] + [(0.0, 1.0)], 2)
    e = np.abs(eval_piecewise(br, t, GELU_GRID) - gelu(GELU_GRID))
    print("GELU_SECMOE6 breakpoints", br)
    print("GELU_SECMOE6 coeffs =", fmt_rows(t))
    rows.append(("gelu_secmoe6", "[-6, 6]", e.max(), e.mean()))

    # --- SiLU, six segments ---------------------------------------------------------------
    br_s = choose_silu_breakpoints()
    quads = [fit_capped_l1(silu, a, b, 2, CAP) for a, b in zip(br_s[:-1], br_s[1:], strict=True)]
    t_s = pad([(0.0,)] + [tuple(q) for q in quads] + [(0.0, 1.0)], 2)
    e = np.abs(eval_piecewise(br_s, t_s, SILU_GRID) - silu(SILU_GRID))
    print("SILU_SIX breakpoints", br_s)
    print("SILU_SIX coeffs =", fmt_rows(t_s))
    rows.append(("silu_six", "[-10, 10]", e.max(), e.mean()))

    # --- GeLU, PUMA layout ----------------------------------------------------------------
    br_p = (-4.0, -1.95, 3.0)
    cubic = fit_lstsq(gelu, -4.0, -1.95, 3)
    sextic = fit_lstsq(gelu, -1.95, 3.0, 6)
    t_p = pad([(0.0,), tuple(cubic), tuple(sextic), (0.0, 1.0)], 6)
    e = np.abs(eval_piecewise(br_p, t_p, GELU_GRID) - gelu(GELU_GRID))
    print("GELU_PUMA breakpoints", br_p)
    print("GELU_PUMA coeffs =", fmt_rows(t_p))
    rows.append(("gelu_puma", "[-6, 6]", e.max(), e.mean()))

    # --- GeLU, MPCFormer quad -------------------------------------------------------------
    t_q = np.array([[0.5, 0.25, 0.125]])
    e = np.abs(eval_piecewise((), t_q, GELU_GRID) - gelu(GELU_GRID))
    rows.append(("gelu_quad", "[-6, 6]", e.max(), e.mean()))

    # --- SecFormer-style erf sine series ----------------------------------------------------
    print("sine-series erf, period / terms / GeLU max error on [-8, 8] / sum |beta|:")
    u = np.linspace(0.0, SATURATION, 5001)
    beta = None
    for period in (8.0, 16.0, 32.0):
        for terms in (5, 6, 7, 8):
            k = np.arange(1, terms + 1)
            basis = np.sin(np.outer(u, k) * (2.0 * np.pi / period))
            b = np.linalg.lstsq(basis, erf(u), rcond=None)[0]
            err = np.abs(fourier_gelu(b, period, SECFORMER_GRID) - gelu(SECFORMER_GRID)).max()
            print(f"  {period:4.0f} {terms} {err:.3e} {np.abs(b).sum():.4g}")
            if period == FOURIER_PERIOD and terms == FOURIER_TERMS:
                beta = b
    assert beta is not None
    print(f"GELU_SECFORMER period = {FOURIER_PERIOD}")
    print("GELU_SECFORMER coeffs = (" + ", ".join(repr(float(c)) for c in beta) + ")")
    ue = np.abs(fourier_erf(beta, FOURIER_PERIOD, u) - erf(u)).max()
    print(f"  erf max error on [-2.5, 2.5]: {ue:.3e}")
    e = np.abs(fourier_gelu(beta, FOURIER_PERIOD, SECFORMER_GRID) - gelu(SECFORMER_GRID))
    rows.append(("gelu_secformer (P=8, K=7)", "[-8, 8]", e.max(), e.mean()))
    e = np.abs(fourier_gelu(PUBLISHED_BETA, 20.0, SECFORMER_GRID) - gelu(SECFORMER_GRID))
    rows.append(("secformer_published (P=20)", "[-8, 8]", e.max(), e.mean()))

    # --- Error table ----------------------------------------------------------------------
    scale = 2.0**FRAC_BITS
    print()
    print(
        "| approximation | domain | max abs err | mean abs err | contract max | contract mean "
        "| max in 2^-16 units |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, dom, mx, mn in rows:
        print(
            f"| {name} | {dom} | {mx:.4e} | {mn:.4e} | {round_up(mx)!r} | {round_up(mn)!r} "
            f"| {mx * scale:.0f} |"
        )

    # --- Iterations needed by the Goldschmidt routines --------------------------------------
    print()
    print("Goldschmidt iterations for relative error <= 1e-3, from x0 = 1 (reciprocal) or")
    print("y0 = 1 (rsqrt), after deflation into [1/R, 1]:")
    print("| R | reciprocal | rsqrt |")
    print("|---|---|---|")
    for ratio in (2.0, 4.0, 16.0, 64.0, 128.0, 512.0, 1e3, 1e5):
        n_r = next(n for n in range(64) if goldschmidt_recip_worst(ratio, n) <= 1e-3)
        n_s = next(n for n in range(64) if goldschmidt_rsqrt_worst(ratio, n) <= 1e-3)
        print(f"| {ratio:g} | {n_r} | {n_s} |")


if __name__ == "__main__":
    main()

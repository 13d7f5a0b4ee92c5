"""Finite-time Lyapunov exponents along an orbit, from the variational equations.

The systems are autonomous and orbits are sampled uniformly, so the one-step propagators
Φ_i = Φ(t_i + dt, t_i) (solutions of Φ' = J(x)·Φ, Φ(0) = I, started at x_i) come out of one batched
solve over the whole orbit. Every longer-horizon quantity is then a product of these d×d matrices:
the FTLE at t_i over τ = m·dt is log σ_max(Φ_{i+m−1}···Φ_i)/τ, built for all i at once in m
renormalised batched products, and the long-time exponents are Benettin's QR iteration over the
same propagators. Nothing is integrated twice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from lvsweep.config.schema import TOLERANCE
from lvsweep.systems.simulate import DEFAULT_SOLVER, Orbit, Solver, describe_params, integrate, solve
from lvsweep.errors import LvsweepError
from lvsweep.systems import DynamicalSystem


def step_propagators(system: DynamicalSystem, x: np.ndarray, dt: float, rtol: float = TOLERANCE,
                     atol: float = TOLERANCE, solver: Solver = DEFAULT_SOLVER) -> np.ndarray:
    """Φ(dt) started at every state of `x[N, d]`, in one solve of the state [N, d + d²]; returns [N, d, d]."""
    n, d = x.shape

    def f(_t: float, y: np.ndarray) -> np.ndarray:
        y = y.reshape(n, d + d * d)
        state, phi = y[:, :d], y[:, d:].reshape(n, d, d)
        return np.concatenate([system.rhs(state), (system.jacobian(state) @ phi).reshape(n, d * d)], axis=1).ravel()

    y0 = np.concatenate([x, np.broadcast_to(np.eye(d).ravel(), (n, d * d))], axis=1)
    sol = solve(system, f, (0.0, dt), y0.ravel(), d + d * d, solver, rtol, atol, t_eval=[dt])
    if sol.status != 0 or not np.all(np.isfinite(sol.y)):
        raise LvsweepError("analysis.ftle_horizon", f"the variational equations of {system.name} with "
                                                    f"{describe_params(system)} could not be integrated over one "
                                                    f"sampling step: {sol.message}")
    return sol.y[:, -1].reshape(n, d + d * d)[:, d:].reshape(n, d, d)


@dataclass(frozen=True)
class FTLEField:
    values: np.ndarray  # [T] largest FTLE at each orbit time over the horizon
    directions: np.ndarray  # [T, d] unit vectors a kick grows fastest along over the horizon
    horizon: float  # τ = m·dt actually used


def windowed_ftle(props: np.ndarray, m: int, dt: float) -> FTLEField:
    """FTLE over m steps at every start i with i + m ≤ len(props): [len(props) − m + 1] values.

    The product is renormalised after every factor (its scale kept as a running log), so long
    horizons on chaotic orbits neither overflow nor lose the leading direction.
    """
    count = len(props) - m + 1
    d = props.shape[-1]
    prod = np.broadcast_to(np.eye(d), (count, d, d)).copy()
    log_scale = np.zeros(count)
    for k in range(m):
        prod = props[k:k + count] @ prod
        norm = np.linalg.norm(prod, axis=(1, 2))
        prod /= norm[:, None, None]
        log_scale += np.log(norm)
    _, s, vt = np.linalg.svd(prod)
    direction = vt[:, 0, :]
    # An SVD's signs are arbitrary: fix them so the largest component is positive (same seed, same numbers).
    sign = np.sign(direction[np.arange(count), np.argmax(np.abs(direction), axis=1)])
    return FTLEField((np.log(s[:, 0]) + log_scale) / (m * dt), direction * sign[:, None], m * dt)


def lyapunov_spectrum(props: np.ndarray, dt: float, settle: int = 0) -> np.ndarray:
    """All exponents, largest first: Benettin's method, QR-renormalising a frame after every step.

    `props[..., T, d, d]` may hold a batch of orbits (one spectrum each, `[..., d]`). The growth over
    the first `settle` steps is not counted: the frame starts as the identity, and until it has
    turned into the growing directions its log-growth is off by an O(1) amount, a bias of O(1)/T.
    """
    *batch, n, d, _ = props.shape
    q = np.broadcast_to(np.eye(d), (*batch, d, d))
    log_r = np.zeros((*batch, d))
    for k in range(n):
        q, r = np.linalg.qr(props[..., k, :, :] @ q)
        if k >= settle:
            log_r += np.log(np.abs(np.diagonal(r, axis1=-2, axis2=-1)))
    return np.flip(np.sort(log_r / ((n - settle) * dt), axis=-1), axis=-1)


def attractor_starts(system: DynamicalSystem, around: np.ndarray, spread: float, count: int, seed: int,
                     transient: float, rtol: float = TOLERANCE, atol: float = TOLERANCE) -> np.ndarray:
    """`count` states on the attractor, `[count, d]`: Gaussian scatter (std `spread`) about `around`,
    each carried through `transient` time units in one batched solve, so they land on the attractor
    at unrelated places (independent orbits, which an ensemble average needs)."""
    rng = np.random.default_rng(seed)
    x0 = np.asarray(around, dtype=float) + spread * rng.standard_normal((count, len(around)))
    return integrate(system, x0, np.array([0.0, transient]), rtol, atol)[:, -1]


def ensemble_spectrum(system: DynamicalSystem, starts: np.ndarray, duration: float, dt: float, settle: float,
                      rtol: float = TOLERANCE, atol: float = TOLERANCE) -> np.ndarray:
    """The Lyapunov spectrum of each orbit from `starts[k, d]`, `[k, d]`, over `duration` time units
    after a frame-settling time `settle` (not counted; see `lyapunov_spectrum`).

    A finite-time exponent of one chaotic orbit scatters with the orbit (and with rounding, which
    picks the orbit), like 1/√duration; the mean over k independent orbits scatters k times less in
    variance, at the sequential cost of about one orbit: the k orbits are one batched solve, and
    each step's k propagators another (so a solve holds k·(d + d²) numbers, not k·T·(d + d²)).
    """
    n_settle, n = int(round(settle / dt)), int(round(duration / dt))
    x = integrate(system, starts, dt * np.arange(n_settle + n + 1), rtol, atol)
    props = np.stack([step_propagators(system, x[:, i], dt, rtol, atol) for i in range(n_settle + n)], axis=1)
    return lyapunov_spectrum(props, dt, n_settle)


@dataclass(frozen=True)
class OrbitStability:
    ftle: FTLEField  # one value per orbit sample
    spectrum: np.ndarray  # [d] long-time exponents over the orbit, largest first

    @property
    def max_lyapunov(self) -> float:
        return float(self.spectrum[0])


def orbit_stability(system: DynamicalSystem, orbit: Orbit, horizon: float, rtol: float = TOLERANCE,
                    atol: float = TOLERANCE, solver: Solver = DEFAULT_SOLVER) -> OrbitStability:
    """FTLE at every sample (the orbit is continued past its end to cover the last horizon) and the
    Lyapunov spectrum of the orbit itself."""
    dt = float(orbit.t[1] - orbit.t[0])
    m = max(1, int(round(horizon / dt)))
    x = orbit.x
    if m > 1:
        tail = integrate(system, x[-1], orbit.t[-1] + dt * np.arange(m), rtol, atol, solver)[0]
        x = np.concatenate([x, tail[1:]])
    props = step_propagators(system, x, dt, rtol, atol, solver)
    return OrbitStability(windowed_ftle(props, m, dt), lyapunov_spectrum(props[:len(orbit.t) - 1], dt))

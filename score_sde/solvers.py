"""The one place that talks to diffrax: adaptive ODE solves on the device, with exact NFE counts."""

from __future__ import annotations

import diffrax
import jax.numpy as jnp

# Vector-field evaluations per diffrax step (accepted or rejected) and at start-up, for each
# solver, as diffrax 0.7 spends them; tests/method/test_solvers.py counts them with a callback.
_SOLVERS = {
    "tsit5": (diffrax.Tsit5, 6, 1),
    "dopri5": (diffrax.Dopri5, 6, 1),
    "dopri8": (diffrax.Dopri8, 13, 1),
    "bosh3": (diffrax.Bosh3, 3, 1),
}


def get_solver(name: str):
    """Returns (solver, evaluations per step, start-up evaluations) for a solver name."""
    try:
        cls, per_step, startup = _SOLVERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown ODE solver {name!r}; valid names: {sorted(_SOLVERS)}") from None
    return cls(), per_step, startup


def solve_ode(
    vector_field, y0, t0: float, t1: float, *, method="tsit5", rtol=1e-5, atol=1e-5, max_steps=8192
):
    """Integrates dy/dt = vector_field(t, y) from t0 to t1 adaptively; returns (y(t1), nfe).

    `y0` may be any pytree. The step size is shared by the whole batch (one error norm over all
    of y), like the published scipy RK45 solves. nfe counts vector-field evaluations.
    """
    solver, per_step, startup = get_solver(method)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: vector_field(t, y)),
        solver,
        t0=t0,
        t1=t1,
        dt0=None,
        y0=y0,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
    )
    y1 = type(y0)(y[0] for y in sol.ys) if isinstance(y0, tuple) else sol.ys[0]
    nfe = startup + per_step * jnp.asarray(sol.stats["num_steps"])
    return y1, nfe

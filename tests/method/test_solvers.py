"""The ODE solver's NFE count equals the vector-field evaluations actually made."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import solvers


@pytest.mark.slow
@pytest.mark.parametrize("method", ["tsit5", "dopri5", "dopri8", "bosh3"])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_nfe_counts_every_evaluation(method, tol):
    calls = []

    def count(t):
        calls.append(1)
        return np.float32(0)

    def vf(t, y):
        zero = jax.pure_callback(count, jax.ShapeDtypeStruct((), jnp.float32), t)
        return -y * jnp.cos(9 * t) + jnp.sin(7 * t) + zero

    solve = jax.jit(
        lambda y: solvers.solve_ode(vf, y, 1.0, 1e-3, method=method, rtol=tol, atol=tol)
    )
    y, nfe = solve(jnp.ones((4, 3)))
    assert int(nfe) == len(calls)
    # And the answer is right: compare with a much tighter solve.
    calls.clear()
    ref, _ = solvers.solve_ode(
        vf, jnp.ones((4, 3)), 1.0, 1e-3, method="dopri8", rtol=1e-10, atol=1e-10
    )
    np.testing.assert_allclose(y, ref, rtol=50 * tol, atol=50 * tol)


def test_unknown_solver():
    with pytest.raises(ValueError, match="valid names"):
        solvers.get_solver("rk45")

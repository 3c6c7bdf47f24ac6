"""score_sde: score-based generative modeling through stochastic differential equations.

model = score_sde.load("runs/c10")   # a work directory -> score_sde.api.Model
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load":  # lazy: `import score_sde` (the launcher's flags) does not start JAX
        from score_sde.api import load

        return load
    raise AttributeError(f"module 'score_sde' has no attribute {name!r}")

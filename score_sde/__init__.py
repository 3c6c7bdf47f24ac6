"""score_sde: score-based generative modeling through stochastic differential equations."""

__version__ = "0.1.0"

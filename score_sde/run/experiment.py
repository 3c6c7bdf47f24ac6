"""One experiment: what a run builds from its typed config, over one ('data',) mesh.

    exp = experiment.build(cfg)                   # SDE, network, optimizer: nothing allocated
    state = exp.new_state()                       # or ckpts.restore(exp.state_like())
    samples, nfe = exp.sample(state.ema_params, key, num=64)   # host numpy, every device

Sampling has one path: a sampler over a global batch sharded along 'data' under jit (the Langevin
batch norm spans the whole batch, whatever the device count), drawn in rounds by `draw`.

Keys derive from key(config.seed): fold_in 0 -> params and the train key, 1 -> eval losses,
2 -> samples, 3 -> likelihood probes.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from score_sde import controllable, fast_sampling, parallel, sampling
from score_sde import losses as losses_lib
from score_sde import score_fn as score_fn_lib
from score_sde import sde as sde_lib
from score_sde.config import Config
from score_sde.config.sections import CONSISTENCY, FLOWS
from score_sde.run import train

KEY_INIT, KEY_EVAL_LOSS, KEY_SAMPLES, KEY_LIKELIHOOD = range(4)


class Guided(NamedTuple):
    """The samplers' params under autoguidance (config.sampling.guide): the model's EMA params
    and the guide's, one pytree, so a jitted sampler takes both as arguments."""

    model: Any
    guide: Any


def make_sde(cfg: Config) -> sde_lib.SDE:
    """The SDE of config.training.sde with its parameters from config.model."""
    m = cfg.model
    if cfg.training.sde == "vesde":
        return sde_lib.VESDE(sigma_min=m.sigma_min, sigma_max=m.sigma_max, N=m.num_scales)
    if cfg.training.sde in FLOWS:
        return sde_lib.get_sde(cfg.training.sde, N=m.num_scales)
    return sde_lib.get_sde(
        cfg.training.sde, beta_min=m.beta_min, beta_max=m.beta_max, N=m.num_scales
    )


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What a run is built from (`build(cfg)`), nothing allocated: the typed config, the
    ('data',) mesh, the SDE, the network as `apply_fn(params, x [B, *shape], labels [B], *,
    train, rng, class_labels [B] | None) -> [B, *shape]` (labels: its noise-level conditioning,
    see score_fn) with `init_params(key) -> params` (a pytree), and the optimizer `tx` of
    config.optim. One example's `shape` is (D,) or (H, W, C)."""

    cfg: Config
    mesh: Mesh
    sde: sde_lib.SDE
    apply_fn: score_fn_lib.ApplyFn
    init_params: Callable[[jax.Array], Any]
    tx: optax.GradientTransformation

    @property
    def shape(self) -> tuple[int, ...]:
        """One example: (D,) or (H, W, C)."""
        return self.cfg.data.shape

    @property
    def unit(self) -> str:
        """What one example is called in progress lines: 'img', or 'pt' for the 2-D toys."""
        return "pt" if len(self.shape) == 1 else "img"

    @property
    def preconditioning(self) -> score_fn_lib.Preconditioning | None:
        """EDM's preconditioning of the network (config.model.preconditioning), or None."""
        m = self.cfg.model
        if m.preconditioning == "none":
            return None
        return score_fn_lib.Preconditioning(
            m.preconditioning,
            m.sigma_data,
            beta_min=m.beta_min,
            beta_max=m.beta_max,
            sigma_min=m.sigma_min,
        )

    @property
    def score_apply(self):
        """score_apply(params, x, t, *, train, rng, class_labels) -> score [B, ...]."""
        return score_fn_lib.get_score_fn(
            self.sde,
            self.apply_fn,
            continuous=self.cfg.training.continuous,
            preconditioning=self.preconditioning,
        )

    def key(self, stream: int) -> jax.Array:
        return jax.random.fold_in(jax.random.key(self.cfg.seed), stream)

    # ------------------------------------------------------------------------- training

    def loss_fn(self, *, train: bool):
        """loss_fn(params, key, batch) -> scalar of config.training (label dropout of
        config.model.class_dropout when training)."""
        from score_sde import guidance

        t = self.cfg.training
        if t.loss in CONSISTENCY:
            loss_fn = self._consistency_loss_fn(train)
        else:
            loss_fn = self._score_loss_fn(train)
        m = self.cfg.model
        if train and m.class_dropout:
            loss_fn = guidance.with_label_dropout(loss_fn, m.class_dropout, m.num_classes)
        return loss_fn

    def _score_loss_fn(self, train: bool):
        t = self.cfg.training
        return losses_lib.get_loss_fn(
            self.sde,
            self.apply_fn,
            continuous=t.continuous,
            train=train,
            reduce_mean=t.reduce_mean,
            likelihood_weighting=t.likelihood_weighting,
            importance_weighting=t.importance_weighting,
            objective=t.loss if t.loss in ("edm", "flow_matching") else "dsm",
            preconditioning=self.preconditioning,
            P_mean=t.P_mean,
            P_std=t.P_std,
            time_sampling=t.time_sampling,
            logit_mean=t.logit_mean,
            logit_std=t.logit_std,
        )

    def _consistency_loss_fn(self, train: bool):
        """Consistency training, or distillation from config.training.teacher's EMA model."""
        from score_sde import consistency

        t, m = self.cfg.training, self.cfg.model
        preconditioning = self.preconditioning
        if preconditioning is None:  # from_config refuses this pair; a hand-built Config may not
            raise ValueError(
                f"config.training.loss={t.loss!r} trains a consistency model: set "
                "config.model.preconditioning='consistency'"
            )
        return consistency.get_consistency_loss_fn(
            self.apply_fn,
            preconditioning,
            sigma_max=m.sigma_max,
            total_steps=t.n_iters,
            train=train,
            s0=t.ct_s0,
            s1=t.ct_s1,
            P_mean=t.P_mean,
            P_std=t.P_std,
            huber_c=t.huber_c,
            teacher=self.teacher if t.loss == "consistency_distillation" else None,
            teacher_solver=t.teacher_solver,
            num_scales=m.num_scales,
        )

    @functools.cached_property
    def teacher(self):
        """(sde, score_fn(x, t)) of config.training.teacher's EMA model (distillation)."""
        path = self.cfg.training.teacher
        try:
            exp, params, _ = restore(path)
        except ValueError as e:
            raise ValueError(f"config.training.teacher: {e}") from None
        if exp.shape != self.shape:
            raise ValueError(
                f"config.training.teacher ({path}) models examples of shape "
                f"{list(exp.shape)}, this run's data {list(self.shape)}; distill a "
                "teacher trained on the same data"
            )
        return exp.sde, exp.score_fn(params)

    @functools.cached_property
    def guide(self) -> tuple[Experiment, Any]:
        """(experiment, EMA params) of config.sampling.guide (autoguidance), checked to model
        this run's data under the same SDE; its network may differ (a smaller or earlier one)."""
        s = self.cfg.sampling
        try:
            exp, params, _ = restore(s.guide, None if s.guide_step < 0 else s.guide_step)
        except ValueError as e:
            raise ValueError(f"config.sampling.guide: {e}") from None
        mine = (list(self.shape), self.sde, self.cfg.data.centered)
        its = (list(exp.shape), exp.sde, exp.cfg.data.centered)
        for what, a, b in zip(("data shape", "SDE", "data.centered"), mine, its, strict=True):
            if a != b:
                raise ValueError(
                    f"config.sampling.guide ({s.guide}) has {what} {b}, this run {a}; a guide "
                    "is a smaller or earlier model of the same data under the same SDE"
                )
        return exp, params

    def sampling_params(self, params: Any) -> Any:
        """What the samplers take: `params`, or Guided(params, the guide's EMA params) when
        config.sampling.guide names a guide (loaded once per Experiment)."""
        if not self.cfg.sampling.guide or isinstance(params, Guided):
            return params
        return Guided(params, self.guide[1])

    def state_like(self) -> train.TrainState:
        """The abstract TrainState, replicated: the target checkpoints restore into."""
        return train.state_like(self.init_params, self.tx, self.mesh)

    @functools.cached_property
    def _init_state(self):
        return train.make_init_state(self.init_params, self.tx, self.mesh)

    def new_state(self) -> train.TrainState:
        """A fresh TrainState from the config's seed (its init is compiled once per Experiment)."""
        return self._init_state(self.key(KEY_INIT))

    def train_steps(self) -> train.TrainSteps:
        sharding = jax.tree.map(lambda x: x.sharding, self.state_like())
        return train.make_train_steps(
            self.loss_fn(train=True),
            self.tx,
            self.cfg.model.ema_rate,
            self.mesh,
            state_sharding=sharding,
        )

    # ------------------------------------------------------------------------- sampling

    def score_fn(self, params: Any, class_labels: jax.Array | None = None) -> sde_lib.ScoreFn:
        """The sampler's score_fn(x [B, *shape], t [B]) -> [B, *shape] of the network with
        `params` (and class labels [B]); for Guided params (`sampling_params`) the autoguided
        s_g + w (s - s_g) of config.sampling.guide_weight and guide_interval."""
        if isinstance(params, Guided):
            from score_sde import guidance

            s, (guide, _) = self.cfg.sampling, self.guide
            guide_labels = class_labels if guide.cfg.model.num_classes > 0 else None
            return guidance.autoguided_score(
                self.score_fn(params.model, class_labels),
                guide.score_fn(params.guide, guide_labels),
                s.guide_weight,
                (s.guide_interval[0], s.guide_interval[1]) if s.guide_interval else None,
            )
        return score_fn_lib.params_score_fn(self.score_apply, params, class_labels=class_labels)

    def round_size(self, num: int, batch: int) -> int:
        """Rows per sampler call: min(batch, num) rounded up to a multiple of the devices."""
        n = self.mesh.devices.size
        return -(-min(batch, num) // n) * n

    def sampler(self, method: str, batch: int, task: str = "none"):
        """`sampler(key, score_fn, y, mask) -> (x [batch, *shape], nfe)` of config.sampling
        for `task` ('none' | 'class': y, mask unused; 'inpaint': keep y where mask = 1;
        'colorize': y the gray image [batch, H, W, 1]), batch sharded over the mesh."""
        s = self.cfg.sampling
        method = fast_sampling.canonical_name(method)
        shape = (batch, *self.shape)
        sharding = parallel.batch_sharding(self.mesh)
        pc: dict[str, Any] = dict(  # what the PC samplers of every task share
            snr=s.snr,
            n_steps=s.n_steps_each,
            probability_flow=s.probability_flow,
            denoise=s.noise_removal,
            langevin_norm=s.langevin_norm,
            sharding=sharding,
        )
        match task, method:
            case (("none" | "class"), m) if m in fast_sampling.METHODS:
                names = ("num_steps", "discretization", "rho", "S_churn", "S_tmin", "S_tmax")
                options = {k: getattr(s, k) for k in (*names, "S_noise", "eta", "eps")}
                base = fast_sampling.get_sampler(
                    self.sde, shape, method, denoise=s.noise_removal, sharding=sharding, **options
                )
                return lambda key, score_fn, y, mask: base(key, score_fn)
            case (("none" | "class"), _):
                base = sampling.get_sampler(
                    self.sde,
                    shape,
                    method=method,
                    predictor=s.predictor,
                    corrector=s.corrector,
                    eps=s.eps,
                    rtol=s.rtol,
                    atol=s.atol,
                    **pc,
                )
                return lambda key, score_fn, y, mask: base(key, score_fn)
            case "inpaint", "pc":
                return controllable.get_pc_inpainter(
                    self.sde, shape, s.predictor, s.corrector, **pc
                )
            case "inpaint", "ode":
                return controllable.get_ode_inpainter(
                    self.sde, shape, rtol=s.rtol, atol=s.atol, sharding=sharding
                )
            case "colorize", ("pc" | "ode"):
                if method == "pc":
                    colorize = controllable.get_pc_colorizer(
                        self.sde, shape, s.predictor, s.corrector, **pc
                    )
                else:
                    colorize = controllable.get_ode_colorizer(
                        self.sde, shape, rtol=s.rtol, atol=s.atol, sharding=sharding
                    )
                return lambda key, score_fn, y, mask: colorize(key, score_fn, y)
        raise ValueError(
            f"config.condition.task={task!r} samples with config.sampling.method 'pc' or 'ode', "
            f"not {method!r}; the few-step samplers serve the unconditional and class tasks"
        )

    def draw(
        self,
        run: Callable[..., Any],
        key: jax.Array,
        num: int,
        batch: int,
        inputs: Callable[[np.ndarray], tuple] | None = None,
        desc: str | None = None,
    ) -> Iterator:
        """Yields run(fold_in(key, i), *inputs(rows)) -> (x, nfe) for rounds i = 0, 1, ... of
        `batch` (= round_size) rows until `num` are drawn; rows [batch] are the indices of the
        round's samples (cycling through 0..num-1 in the last round, whose surplus the caller
        trims). x is a global array sharded over the mesh. With `desc`, process 0 shows the
        progress (store.progress: a bar on a terminal, plain lines in a log)."""
        from score_sde.store import progress

        shown = desc is not None and parallel.is_main_process()
        with progress.bar(num, desc or "", self.unit, enabled=shown) as bar:
            for i in range(-(-num // batch)):
                rows = np.arange(i * batch, (i + 1) * batch) % num
                yield run(jax.random.fold_in(key, i), *(inputs(rows) if inputs else ()))
                bar.update(min(batch, num - i * batch))

    def sample_batches(
        self,
        params: Any,
        key: jax.Array,
        num: int,
        method: str | None = None,
        batch: int | None = None,
        desc: str | None = None,
    ) -> Iterator[tuple[jax.Array, jax.Array]]:
        """Yields (x, nfe): global arrays [b, *shape] of the unconditional sampler until `num`
        samples are drawn (the last round's surplus included; trim it); `desc` as in draw."""
        method = method or self.cfg.sampling.method
        b = self.round_size(num, batch or self.cfg.sampling.batch_size)
        run = unconditional_sampler(self, method, b)
        params = self.sampling_params(params)  # with config.sampling.guide's
        yield from self.draw(functools.partial(run, params), key, num, b, desc=desc)

    def sample(
        self,
        params: Any,
        key: jax.Array,
        num: int,
        method: str | None = None,
        batch: int | None = None,
        desc: str | None = None,
    ) -> tuple[np.ndarray, int]:
        """`num` samples [num, *shape] (host numpy, on every process) and the sampler's NFE;
        `desc` shows the progress as in draw."""
        out: list[np.ndarray] = []
        nfe: jax.Array | int = 0
        for x, n in self.sample_batches(params, key, num, method, batch, desc):
            out.append(parallel.to_host(x))
            nfe = n
        return np.concatenate(out)[:num], int(parallel.to_host(nfe))


@functools.lru_cache(maxsize=8)  # bounded: experiments are keyed by identity
def unconditional_sampler(exp: Experiment, method: str, batch: int):
    """jit((params, key) -> (x [batch, *shape], nfe)) of the unconditional sampler `method`,
    compiled once per (experiment, method, batch)."""
    sampler = exp.sampler(method, batch)
    return jax.jit(lambda params, key: sampler(key, exp.score_fn(params), None, None))


def build(cfg: Config, mesh: Mesh | None = None) -> Experiment:
    """The experiment of `cfg` on `mesh` (default: every device). Nothing is allocated: the
    network's graph comes from eval_shape, parameters are created under jit by new_state()."""
    from score_sde import models

    mesh = mesh or parallel.make_mesh(shape=cfg.training.mesh)
    parallel.check_batch_size(cfg.training.batch_size, mesh)
    apply_fn, init_params = models.abstract_model(cfg.model, cfg.data)
    tx = train.make_optimizer(cfg.optim, cfg.training.phema_stds)
    return Experiment(cfg, mesh, make_sde(cfg), apply_fn, init_params, tx)


def restore(
    workdir: str, step: int | None = None, overrides: Mapping[str, str] | None = None
) -> tuple[Experiment, Any, int]:
    """(experiment, EMA params, step) of the run in `workdir`: its config.json (with `overrides`
    as on the command line) and checkpoint `step` (default: the newest intact one). One
    ValueError naming what is missing."""
    import json

    from score_sde.config import apply_overrides, from_config
    from score_sde.store import fs
    from score_sde.store.checkpoint import Checkpoints, restore_ema

    if fs.path(workdir).is_file():
        raise ValueError(
            f"{workdir} is a file, not a work directory: score_sde.load takes a work directory "
            "or a .safetensors file written by `score-sde export --workdir=DIR --out=FILE"
            ".safetensors`"
        )
    path = os.path.join(workdir, "config.json")
    if not fs.path(path).is_file():
        raise ValueError(
            f"{path} not found: score_sde.load takes a work directory written by --mode=train "
            "or by python -m score_sde.convert"
        )
    try:
        stored = json.loads(fs.path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{path} is not JSON ({e}): it holds the run's config, written at each start of "
            "training. Put back the file (e.g. from a copy of the run), or rerun the training's "
            "command once (it rewrites config.json and resumes from the newest checkpoint)"
        ) from None
    cfg = from_config(apply_overrides(stored, overrides or {}))
    exp = build(cfg)
    with Checkpoints(workdir, read_only=True) as ckpts:
        params, step = restore_ema(ckpts, exp.state_like(), step)
    return exp, params, step


CLASSIFIER_DIR = "classifier"  # under the score model's work directory


def load_classifier(cfg: Config, workdir: str, mesh: Mesh):
    """(classifier_apply, EMA params) of the newest classifier checkpoint under `workdir`
    (the classifier's own directory, e.g. <score workdir>/classifier)."""
    from score_sde.store.checkpoint import Checkpoints, require_checkpoint

    apply_fn, init_params, tx = classifier(cfg)
    with Checkpoints(workdir, read_only=True) as ckpts:
        fix = "train one first with --mode=train_classifier (same --workdir as the score model)"
        require_checkpoint(ckpts, fix, what="classifier checkpoint")
        state = ckpts.restore(train.state_like(init_params, tx, mesh))
    return apply_fn, state.ema_params


def classifier(cfg: Config):
    """(classifier_apply, init_params(key) -> params, optimizer) of config.classifier, for the
    config's images."""
    from flax import nnx

    from score_sde.models import classifier as classifier_lib
    from score_sde.models.layers import KeyGen

    if len(cfg.data.shape) != 3:
        raise ValueError(
            f"the noise-conditional classifier takes images [H, W, C]; the data shape is "
            f"{cfg.data.shape}"
        )
    c, channels = cfg.classifier, cfg.data.shape[-1]
    module = nnx.eval_shape(
        lambda: classifier_lib.Classifier(c, channels, rngs=KeyGen(jax.random.key(0)))
    )
    apply_fn = classifier_lib.make_classifier_apply(nnx.split(module)[0])
    init_params = lambda key: classifier_lib.init_classifier(c, channels, key)[1]
    return apply_fn, init_params, train.make_optimizer(c.optim)

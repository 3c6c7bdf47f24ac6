"""A small residual MLP score network for low-dimensional (toy) data.

out = Dense(act(h_L)), h_{l+1} = h_l + Dense(dropout(act(Dense(act(h_l)) + Dense(temb)))),
h_0 = Dense(x), temb = MLP(embed(labels)), with x [B, D] and labels [B].

Noise-level embedding (as in NCSN++): 'fourier' embeds log(labels) (labels are sigma for VE),
'positional' embeds labels themselves (labels are 999 t for VP). With scale_by_sigma the output is
divided by labels (VE score parameterization).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from score_sde.models import layers
from score_sde.models.spec import DataSpec, ModelSpec


class MLP(nnx.Module):
    """Residual MLP: x [B, D], labels [B] -> [B, D]."""

    def __init__(self, cfg: ModelSpec, data: DataSpec, *, rngs: layers.KeyGen):
        if data.dim is None:
            raise ValueError(
                f"config.model.name='mlp' needs vector data; data shape is {data.shape}: "
                "set config.data.dim or use an image model"
            )
        self.cfg, self.dim = cfg, data.dim
        nf = cfg.nf
        dt = layers.get_dtype(cfg.dtype)
        if cfg.embedding_type == "fourier":
            self.fourier = layers.GaussianFourierProjection(nf, cfg.fourier_scale, rngs=rngs)
            emb_in = 2 * nf
        else:
            emb_in = nf
        self.temb0 = layers.dense(emb_in, 4 * nf, dtype=dt, rngs=rngs)
        self.temb1 = layers.dense(4 * nf, 4 * nf, dtype=dt, rngs=rngs)
        if cfg.num_classes > 0:
            # index num_classes is the null label (classifier-free guidance)
            self.label_emb = layers.embed(cfg.num_classes + 1, 4 * nf, rngs=rngs)
        self.inp = layers.dense(data.dim, nf, dtype=dt, rngs=rngs)
        self.hidden = nnx.List(
            [layers.dense(nf, nf, dtype=dt, rngs=rngs) for _ in range(cfg.num_layers)]
        )
        self.tproj = nnx.List(
            [layers.dense(4 * nf, nf, dtype=dt, rngs=rngs) for _ in range(cfg.num_layers)]
        )
        self.hidden_out = nnx.List(
            [
                layers.dense(nf, nf, init_scale=0.0, dtype=dt, rngs=rngs)
                for _ in range(cfg.num_layers)
            ]
        )
        self.out = layers.dense(nf, data.dim, init_scale=0.0, dtype=dt, rngs=rngs)

    def __call__(self, x, labels, *, train=False, rng=None, class_labels=None):
        cfg = self.cfg
        act = layers.get_act(cfg.nonlinearity)
        dt = layers.get_dtype(cfg.dtype)
        if cfg.embedding_type == "fourier":
            temb = self.fourier(jnp.log(labels))
        else:
            temb = layers.get_timestep_embedding(labels, cfg.nf)
        temb = self.temb1(act(self.temb0(temb.astype(dt))))
        if cfg.num_classes > 0:
            if class_labels is None:
                class_labels = jnp.full(x.shape[:1], cfg.num_classes, jnp.int32)
            temb = temb + self.label_emb(class_labels).astype(temb.dtype)
        temb = act(temb)
        h = self.inp(x.astype(dt))
        for i in range(cfg.num_layers):
            u = self.hidden[i](act(h)) + self.tproj[i](temb)
            u = layers.dropout(act(u), cfg.dropout, layers.fold(rng, i), train)
            h = h + self.hidden_out[i](u)
        out = self.out(act(h)).astype(x.dtype)
        if cfg.scale_by_sigma:
            out = out / labels.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
        return out

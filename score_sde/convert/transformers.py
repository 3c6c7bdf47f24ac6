"""Released transformer checkpoints (PyTorch state_dicts) <-> our U-ViT and DiT parameters.

Sources, read without torch (score_sde.store.torch_format):
- U-ViT (baofff/U-ViT `libs/uvit.py`): the pixel-space `cifar10_uvit_small.pth` (U-ViT-S/2) and
  `imagenet64_uvit_{mid,large}.pth` (U-ViT-M/4, L/4): the EMA network's state_dict.
- DiT (facebookresearch/DiT `models.py`, `DiT-XL-2-256x256.pt`) and SiT (willisma/SiT
  `models.py`, `SiT-XL-2-256x256.pt`, the same modules): a state_dict, or train.py's
  {'model', 'ema', 'opt', ...} (its EMA is taken).

Keys are our parameter paths joined by '.', with the leaf renamed (kernel, scale, embedding ->
weight) and these modules renamed:

    ours                                  theirs
    time_embed.{0,1}                      time_embed.{0,2}           (Sequential with a SiLU)
    t_embedder.mlp_{0,2}                  t_embedder.mlp.{0,2}
    y_embedder.embedding                  y_embedder.embedding_table.weight
    [blocks.N., final_layer.]adaLN_modulation   ...adaLN_modulation.1    (Sequential(SiLU, Linear))

Values: Linear weights [out, in] -> kernels [in, out]; Conv2d weights [O, I, kh, kw] -> [kh, kw, I,
O]; LayerNorm weight -> scale; everything else as is. Where the two differ beyond that:
- U-ViT's ImageNet-64 models have no null label (nn.Embedding(1000, D)); ours has num_classes + 1
  rows, and the extra row gets the mean of the class rows. The original cannot sample without a
  class; sample them with config.condition.task='class' (and scale 0: no guidance).
- DiT's `pos_embed` is a frozen buffer in its state_dict; here it is a constant. It is checked
  equal to our fixed sin-cos embedding (a wrong image size or width fails) and then dropped.
- DiT's learned-sigma head converts as is (C_out = 2C); the network returns the first C channels.
- SiT (a DiT config on the linear flow path, training.sde='flow'): its t runs from noise 0 to data
  1 and it predicts data - noise; ours t runs from data 0 to noise 1 and predicts noise - data. The
  time is reversed by the config (model.time_offset=1, time_scale=-1/999: SiT's t = 1 - labels /
  999), the velocity by negating final_layer.linear (exact).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from score_sde.convert import layout

FAMILIES = ("uvit", "dit")
SIT_TIME = (1.0, -1.0 / 999.0)  # (time_offset, time_scale) of a SiT checkpoint on our flow path
EXPECTED = (
    "a PyTorch state_dict of the released network: baofff/U-ViT's .pth (cifar10_uvit_small.pth, "
    "imagenet64_uvit_mid.pth, ...), facebookresearch/DiT's or willisma/SiT's .pt "
    "(DiT-XL-2-256x256.pt, SiT-XL-2-256x256.pt) or their train.py checkpoints"
)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One of our leaves in the original's state_dict: its key and how the value moves.

    how: 'conv' (OIHW <-> HWIO), 'dense' (transpose) or 'id'; null_row: ours has one row more
    (the null label), missing in the original; negate: the value changes sign (SiT's velocity)."""

    key: str
    how: str
    null_row: bool = False
    negate: bool = False

    def torch_shape(self, ours: tuple[int, ...]) -> tuple[int, ...]:
        if self.null_row:
            ours = (ours[0] - 1, *ours[1:])
        if self.how == "conv":
            return (ours[3], ours[2], ours[0], ours[1])
        return tuple(reversed(ours)) if self.how == "dense" else tuple(ours)

    def to_ours(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if self.how == "conv":
            x = x.transpose(2, 3, 1, 0)
        elif self.how == "dense":
            x = x.T
        if self.null_row:  # the class rows' mean: no trained unconditional row exists
            x = np.concatenate([x, x.mean(axis=0, keepdims=True, dtype=np.float64).astype(x.dtype)])
        return -x if self.negate else x

    def to_torch(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        x = -x if self.negate else x
        if self.null_row:
            x = x[:-1]
        if self.how == "conv":
            return x.transpose(3, 2, 0, 1)
        return x.T if self.how == "dense" else x


def source_kind(config) -> str:
    """'uvit', 'dit' or 'sit': which release `config` converts, with a ValueError naming the field
    when the config's parameterization is not the original's (the weights would compute another
    function)."""
    m, t = config.model, config.training
    if m.name not in FAMILIES:
        raise ValueError(
            f"config.model.name ({m.name!r}): the transformer converter takes {FAMILIES}"
        )
    if m.preconditioning != "none":
        raise ValueError(
            f"config.model.preconditioning ({m.preconditioning!r}): the released U-ViT, DiT and "
            "SiT networks take the raw input and the timestep; set it to 'none'"
        )
    if m.name == "uvit" or t.sde == "vpsde":
        if t.sde != "vpsde":
            raise ValueError(
                f"config.training.sde ({t.sde!r}): U-ViT's released networks predict the noise of "
                "the VP SDE at labels 999 t; use 'vpsde' (configs/vp/cifar10_uvit_s2.py)"
            )
        if m.name == "dit" and (m.time_offset, m.time_scale) != (0.0, 1.0):
            raise ValueError(
                f"config.model.time_offset ({m.time_offset}) and time_scale ({m.time_scale}): a "
                "DiT checkpoint on the VP SDE embeds the labels themselves; set 0 and 1"
            )
        return m.name
    if t.sde != "flow":
        raise ValueError(
            f"config.training.sde ({t.sde!r}): a DiT checkpoint converts with 'vpsde' (DiT) or "
            "'flow' (SiT's linear interpolant); see configs/vp/imagenet256_dit_xl2.py and "
            "configs/flow/imagenet256_sit_xl2.py"
        )
    if m.time_offset != SIT_TIME[0] or abs(m.time_scale - SIT_TIME[1]) > 1e-12:
        raise ValueError(
            f"config.model.time_offset ({m.time_offset}) and time_scale ({m.time_scale}): SiT's "
            "t runs from noise 0 to data 1, so on our flow path it is 1 - labels / 999; set "
            "--config.model.time_offset=1.0 --config.model.time_scale=-0.001001001001001001 "
            "(configs/flow/imagenet256_sit_xl2.py)"
        )
    return "sit"


_RENAMES = {  # our module name -> theirs, per family (matched on one path element)
    "uvit": {},
    "dit": {"mlp_0": "mlp.0", "mlp_2": "mlp.2", "adaLN_modulation": "adaLN_modulation.1"},
}


def entries(like: Mapping, kind: str) -> dict[tuple, Entry]:
    """Our flat parameter path -> its Entry in the `kind` ('uvit', 'dit', 'sit') state_dict."""
    family = "uvit" if kind == "uvit" else "dit"
    out = {}
    flat: dict[tuple, Any] = layout.flatten(dict(like))
    for path, leaf in flat.items():
        parts = [_RENAMES[family].get(str(p), str(p)) for p in path[:-1]]
        name, ndim = str(path[-1]), len(leaf.shape)
        how = "id"
        null_row = negate = False
        if name == "kernel":
            name, how = "weight", ("conv" if ndim == 4 else "dense")
        elif name in ("scale", "embedding"):
            name = "weight"
        if family == "uvit" and parts[:1] == ["time_embed"]:
            parts[1] = {"0": "0", "1": "2"}[parts[1]]
        if family == "uvit" and parts == ["label_emb"]:
            null_row = True  # the released ImageNet-64 models have none (see from_torch)
        if parts == ["y_embedder"]:
            parts = ["y_embedder", "embedding_table"]
        if kind == "sit" and parts == ["final_layer", "linear"]:
            negate = True
        out[path] = Entry(".".join([*parts, name]), how, null_row, negate)
    return out


def _leaf(tree: Mapping, path: tuple) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def _pos_embed(config) -> np.ndarray:
    """DiT's fixed position embedding [1, T, D] as its state_dict holds it."""
    from score_sde.models.transformer import sincos_pos_embed_2d

    grid = config.data.image_size // config.model.patch_size
    return sincos_pos_embed_2d(config.model.hidden_size, grid)[None]


def from_torch(state_dict: Mapping, like: Mapping, config, what: str = "checkpoint") -> dict:
    """The original's state_dict -> our pure params shaped like `like`, checked: one ValueError
    listing missing keys, unexpected keys and shape mismatches."""
    kind = source_kind(config)
    src = dict(state_dict)
    if src and all(k.startswith("module.") for k in src):  # saved from DataParallel
        src = {k[len("module.") :]: v for k, v in src.items()}
    out: dict[tuple, object] = {}
    missing: list[str] = []
    mismatched: list[tuple] = []
    used: set[str] = set()
    for path, e in entries(like, kind).items():
        if e.key not in src:
            missing.append(e.key)
            continue
        used.add(e.key)
        leaf = _leaf(like, path)
        x, shape = np.asarray(src[e.key]), tuple(leaf.shape)
        if e.null_row and x.shape == shape:  # it has the null label (K + 1 rows): as is
            e = dataclasses.replace(e, null_row=False)
        if x.shape != e.torch_shape(shape):
            mismatched.append((e.key, x.shape, e.torch_shape(shape)))
            continue
        out[path] = e.to_ours(x).astype(leaf.dtype)  # a half-precision file: our dtype
    if kind != "uvit" and "pos_embed" in src:
        used.add("pos_embed")
        pos, want = np.asarray(src["pos_embed"], np.float32), _pos_embed(config)
        if pos.shape != want.shape:
            mismatched.append(("pos_embed", pos.shape, want.shape))
        elif not np.allclose(pos, want, atol=1e-5):
            raise ValueError(
                f"{what}: its pos_embed is not DiT's fixed sin-cos embedding of a "
                f"{int(np.sqrt(want.shape[1]))}^2 token grid (max difference "
                f"{np.abs(pos - want).max():.3g}); this converter takes DiT / SiT's frozen one"
            )
    elif kind != "uvit":
        missing.append("pos_embed")
    unexpected = [k for k in src if k not in used]
    layout._check(what, missing, unexpected, mismatched)
    return layout.unflatten(out)


def to_torch(params: Mapping, config) -> dict[str, np.ndarray]:
    """Our pure params -> the original's state_dict (U-ViT: without the null label's row, as the
    released ImageNet-64 models; DiT / SiT: with the pos_embed buffer)."""
    kind = source_kind(config)
    flat = layout.flatten(dict(params))
    sd = {e.key: e.to_torch(np.asarray(flat[p])) for p, e in entries(params, kind).items()}
    if kind != "uvit":
        sd["pos_embed"] = _pos_embed(config)
    return sd


def read_checkpoint(path: str) -> tuple[dict, dict, int]:
    """A released `.pth` / `.pt` -> (model state_dict, EMA state_dict, step 0): a bare state_dict
    is both; DiT / SiT train.py's {'model', 'ema', ...} gives each."""
    from score_sde.store import torch_format

    try:
        ckpt = torch_format.load(path)
    except (ValueError, OSError) as e:
        cause = " ".join(str(e).split())[:200]
        raise ValueError(
            f"--source {path} is not a PyTorch file ({cause}); pass {EXPECTED}"
        ) from None
    if not isinstance(ckpt, dict):
        raise ValueError(
            f"--source {path} holds a {type(ckpt).__name__}, not a state_dict; pass {EXPECTED}"
        )
    if isinstance(ckpt.get("ema"), dict):
        ema = ckpt["ema"]
        model = ckpt["model"] if isinstance(ckpt.get("model"), dict) else ema
    else:
        model = ema = ckpt
    bad = [k for k, v in ema.items() if not isinstance(v, np.ndarray)]
    if bad or not ema:
        raise ValueError(
            f"--source {path}: not a state_dict of tensors (found {sorted(ckpt)[:8]}); pass "
            f"{EXPECTED}"
        )
    return model, ema, 0


def convert_params(config, source: str, like: Mapping) -> tuple[dict, dict, int]:
    """(params, ema params, step) of a released U-ViT / DiT / SiT file in our layout."""
    source_kind(config)  # the config's parameterization first: nothing read if it is wrong
    model, ema, step = read_checkpoint(source)
    if model is ema:  # a bare state_dict: one conversion serves both
        params = from_torch(ema, like, config, source)
        return params, params, step
    return (
        from_torch(model, like, config, f"{source} (model)"),
        from_torch(ema, like, config, f"{source} (ema)"),
        step,
    )

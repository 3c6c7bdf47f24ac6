"""A small U-ViT (VP SDE, continuous time) on scikit-learn's 8x8 digits: the transformer demo.

    python launch.py --config configs/digits/uvit.py --workdir runs/digits_uvit
    python launch.py --config configs/digits/uvit.py --workdir runs/digits_uvit --mode sample

2x2 patches (16 patch tokens and the time token), width 64, depth 6 (3 in, 1 middle, 3 out
blocks joined by long skips), an MLP on the time token: 408,206 parameters. Class-conditional
(a class token; index 10 = the null label): --config.model.num_classes=10
--config.model.class_dropout=0.1.
Measured (2,000 steps of batch 64, EMA; benchmarks/RESULTS.md "U-ViT and DiT on the digits"):
1,085 s of training on the busy shared 2-core CPU (~0.5 s/step); test DSM loss 0.112; 512
samples: pixel FD 0.65 (DDIM, 20 NFE) / 0.71 (DPM-Solver++ 2M, 20 NFE) / 0.62 (PC, 100 NFE) to
the test digits (floor 0.339), classifier confidence 0.63-0.65 -- behind the DDPM++ digits
config at this budget (0.40, 0.84).
"""

from configs import datasets, presets


def get_config():
    config = datasets.digits()
    presets.vp(config, continuous=True)
    model = config.model
    model.name = "uvit"
    model.patch_size = 2
    model.embed_dim = 64
    model.depth = 6
    model.num_heads = 4
    model.mlp_time_embed = True
    model.num_scales = 200  # sampler steps
    model.ema_rate = 0.99  # short runs: a slow EMA would still remember the init
    return config

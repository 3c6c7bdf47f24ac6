"""DiT-XL/2 on ImageNet 256x256 latents, class-conditional, DDPM's discrete VP (Peebles & Xie 2023;
facebookresearch/DiT): the released DiT-XL-2-256x256.pt converts to it.

    python -m score_sde.convert --config configs/vp/imagenet256_dit_xl2.py \
        --source DiT-XL-2-256x256.pt --workdir runs/imagenet256_dit_xl2
    python launch.py --config configs/vp/imagenet256_dit_xl2.py --workdir runs/imagenet256_dit_xl2 \
        --mode sample

A latent model: x is 32x32x4, Stable Diffusion's VAE latents times 0.18215 (the VAE is not part of
this framework: samples are latents; decoding them to images, and making latents to train on, is
out of scope). Width 1152, depth 28, 16 heads, 2x2 patches (256 tokens), 1,000 classes and the
null label, learned sigma (the second 4 output channels, discarded here): 674,834,720
parameters, plus DiT's frozen sin-cos position embedding (294,912, a constant here) = the
published 675M. Its noise schedule is DDPM's linear one over 1,000 steps (beta 1e-4 -> 0.02):
our VP SDE in discrete time (config.training.continuous False), timesteps (N - 1) t.
Published: FID 2.27 with classifier-free guidance 1.5 (ours: scale w = 0.5, as (1 + w) s(y) -
w s(null)) on all four channels (DiT guides the first three), 250 DDPM steps; here ancestral
sampling over the 1,000 steps. Training as DiT: AdamW lr 1e-4, no weight decay, batch 256,
EMA 0.9999, label dropout 0.1 (7M steps for the published model). Not measured here.
"""

import ml_collections

from configs import datasets, presets


def get_config():
    config = datasets.imagenet256_latents()
    presets.vp(config, continuous=False)
    config.training.batch_size = 256
    config.training.n_iters = 7000000
    config.sampling.predictor = "ancestral_sampling"
    model = config.model
    model.name = "dit"
    model.patch_size = 2
    model.hidden_size = 1152
    model.depth = 28
    model.num_heads = 16
    model.num_classes = 1000
    model.class_dropout = 0.1
    model.learn_sigma = True
    optim = config.optim
    optim.optimizer = "AdamW"
    optim.lr = 1e-4
    optim.warmup = 0
    optim.grad_clip = -1.0
    config.condition = ml_collections.ConfigDict({"task": "class", "scale": 0.5})
    return config

"""SiT-XL/2 on ImageNet 256x256 latents, class-conditional, the linear interpolant with velocity
prediction (Ma et al. 2024; willisma/SiT): the released SiT-XL-2-256x256.pt converts to it.

    python -m score_sde.convert --config configs/flow/imagenet256_sit_xl2.py \
        --source SiT-XL-2-256x256.pt --workdir runs/imagenet256_sit_xl2
    python launch.py --config configs/flow/imagenet256_sit_xl2.py --workdir runs/imagenet256_sit_xl2 \
        --mode sample

DiT-XL/2's network (configs/vp/imagenet256_dit_xl2.py: 32x32x4 latents of Stable Diffusion's VAE
x 0.18215, 674,834,720 parameters, learned sigma) on our flow path x_t = (1 - t) x_0 + t z. SiT's
t runs the other way (noise 0 -> data 1) and its velocity is data - noise: the network embeds
time_offset + time_scale * labels = 1 - labels / 999 = SiT's t (labels = 999 t), and the
converter negates the velocity head. Samples are latents (decoding them needs the VAE, which is
not part of this framework). Published: FID 2.06 (SDE sampler, 250 steps, classifier-free
guidance 1.5: ours scale w = 0.5); here Euler's method on the velocity, 250 steps. Training as
SiT: AdamW lr 1e-4, batch 256, EMA 0.9999, label dropout 0.1. Not measured here.
"""

import ml_collections

from configs import datasets, presets


def get_config():
    config = datasets.imagenet256_latents()
    presets.flow_matching(config)
    del config.model["embedding_type"]  # DiT embeds the time itself (no such field)
    config.data.centered = True  # latents are used as they are
    config.training.batch_size = 256
    config.training.n_iters = 7000000
    config.sampling.num_steps = 250
    model = config.model
    model.name = "dit"
    model.patch_size = 2
    model.hidden_size = 1152
    model.depth = 28
    model.num_heads = 16
    model.num_classes = 1000
    model.class_dropout = 0.1
    model.learn_sigma = True
    model.time_offset = 1.0  # SiT's t = 1 - labels / 999
    model.time_scale = -1.0 / 999.0
    optim = config.optim
    optim.optimizer = "AdamW"
    optim.lr = 1e-4
    optim.warmup = 0
    optim.grad_clip = -1.0
    config.condition = ml_collections.ConfigDict({"task": "class", "scale": 0.5})
    return config

"""Dataset bases: the training schedule, sampler, evaluation, data and optimizer settings of the
original score_sde per dataset, and no model fields.

Not configs on their own: a published file takes one of these, applies an SDE and an
architecture from configs/presets.py, then states what it changes:

    config = datasets.cifar10()
    presets.vp(config, continuous=True)
    presets.ddpmpp(config)

Fields equal to the defaults of score_sde/config/sections.py (Adam, lr 2e-4, warmup 5000, gradient
clipping 1, centered False, ...) are not written. `training.sde`, `continuous`, `reduce_mean`
and `sampling.method`, `predictor`, `corrector` come from the SDE preset. `config.condition` and
`config.classifier` (controllable generation, --mode=train_classifier) are filled from their
defaults by the config boundary; see score_sde.config.ConditionConfig / ClassifierConfig.
"""

import ml_collections


def _image_base(dataset: str, image_size: int) -> ml_collections.ConfigDict:
    """CIFAR-10's values in the original; the other datasets change a few of them."""
    config = ml_collections.ConfigDict()
    config.seed = 42

    config.training = training = ml_collections.ConfigDict()
    training.batch_size = 128
    training.n_iters = 1300001
    training.snapshot_freq = 50000
    training.log_freq = 50
    training.eval_freq = 100
    training.snapshot_freq_for_preemption = 10000  # extra checkpoints for preemptible machines
    training.snapshot_sampling = True  # a sample grid at each snapshot
    training.likelihood_weighting = False

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.snr = 0.16  # the Langevin corrector's signal-to-noise ratio
    # the original code's Langevin step (mean norms over each device's batch), with which the
    # published FIDs were made (also the field's default); ours, 'batch', does not depend on the
    # device count
    sampling.langevin_norm = "mean_per_device"
    sampling.n_steps_each = 1
    sampling.noise_removal = True
    sampling.probability_flow = False

    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.begin_ckpt = 9
    evaluate.end_ckpt = 26
    evaluate.batch_size = 1024
    evaluate.enable_sampling = False
    evaluate.num_samples = 50000
    evaluate.enable_loss = True
    evaluate.enable_bpd = False
    evaluate.bpd_dataset = "test"
    evaluate.num_repeats = 5  # bits/dim: dequantization draws over the whole test split

    config.data = data = ml_collections.ConfigDict()
    data.dataset = dataset
    data.image_size = image_size
    data.num_channels = 3
    data.random_flip = True

    config.model = ml_collections.ConfigDict()  # filled by the presets
    config.optim = ml_collections.ConfigDict()  # the defaults: Adam, lr 2e-4, warmup 5000
    return config


def cifar10() -> ml_collections.ConfigDict:
    """CIFAR-10 32x32: batch 128, 1.3M steps; FID samples off by default."""
    return _image_base("CIFAR10", 32)


def celeba() -> ml_collections.ConfigDict:
    """CelebA 64x64 (center-cropped): CIFAR-10's schedule, snr 0.17, samples from checkpoint 1."""
    config = _image_base("CELEBA", 64)
    config.sampling.snr = 0.17
    config.eval.begin_ckpt = 1
    config.eval.enable_sampling = True
    return config


def high_resolution(dataset: str, image_size: int) -> ml_collections.ConfigDict:
    """The original LSUN defaults, which its CelebA-HQ and FFHQ configs use too: batch 64, 2.4M
    steps, snr 0.075, FID samples from checkpoint 50 to 96."""
    config = _image_base(dataset, image_size)
    config.training.batch_size = 64
    config.training.n_iters = 2400001
    config.training.snapshot_freq_for_preemption = 5000
    config.sampling.snr = 0.075
    config.eval.begin_ckpt = 50
    config.eval.end_ckpt = 96
    config.eval.batch_size = 512
    config.eval.enable_sampling = True
    return config


def lsun(category: str, image_size: int = 256) -> ml_collections.ConfigDict:
    """An LSUN category ('bedroom', 'church_outdoor', ...) at image_size (256; NCSNv2: 128)."""
    config = high_resolution("LSUN", image_size)
    config.data.category = category
    return config


def celebahq(image_size: int) -> ml_collections.ConfigDict:
    """CelebA-HQ at 256 or 1024 px, with the LSUN schedule."""
    return high_resolution("CelebAHQ", image_size)


def ffhq(image_size: int) -> ml_collections.ConfigDict:
    """FFHQ at 256 or 1024 px (a folder of images: set --config.data.path), LSUN schedule."""
    return high_resolution("FFHQ", image_size)


def digits() -> ml_collections.ConfigDict:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16 -> [0, 1]; train = the first
    1,500, test = the rest): no download, a short schedule for a 2-core CPU, sample quality by eye
    (Inception features mean nothing at 8x8)."""
    config = ml_collections.ConfigDict()
    config.seed = 42

    config.training = training = ml_collections.ConfigDict()
    training.batch_size = 64
    training.n_iters = 2000
    training.n_jitted_steps = 50  # optimizer steps per dispatch (lax.scan)
    training.log_freq = 250
    training.eval_freq = 500
    training.snapshot_freq = 2000  # one snapshot (and a sample grid) at the end
    training.snapshot_freq_for_preemption = 1000
    training.snapshot_sampling = True
    training.likelihood_weighting = False

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.snr = 0.16
    sampling.langevin_norm = "batch"  # ours: the step does not change with the device count
    sampling.n_steps_each = 1
    sampling.noise_removal = True
    sampling.probability_flow = False
    sampling.batch_size = 256
    sampling.num_samples = 256

    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.begin_ckpt = -1  # -1: the latest checkpoint only
    evaluate.end_ckpt = -1
    evaluate.batch_size = 256
    evaluate.enable_loss = True
    evaluate.enable_bpd = False
    evaluate.bpd_dataset = "test"
    evaluate.enable_sampling = True
    evaluate.num_samples = 256
    evaluate.enable_fid = False
    evaluate.samplers = ("pc",)

    config.data = data = ml_collections.ConfigDict()
    data.dataset = "digits"
    data.image_size = 8  # 8x8: tests/system/test_digits.py's classifier check runs at this size
    data.num_channels = 1  # random_flip stays off: digits are not mirror-symmetric

    config.model = ml_collections.ConfigDict()  # filled by the presets
    config.optim = optim = ml_collections.ConfigDict()
    optim.lr = 2e-3
    optim.warmup = 200
    return config


def imagenet64() -> ml_collections.ConfigDict:
    """ImageNet 64x64 with its 1,000 labels, as an .npz (x_train uint8 [N, 64, 64, 3], y_train;
    set --config.data.path): CIFAR-10's defaults otherwise."""
    return _image_base("npz", 64)


def imagenet256_latents() -> ml_collections.ConfigDict:
    """ImageNet 256x256 as 32x32x4 latents of Stable Diffusion's VAE (sd-vae-ft-mse) times
    0.18215, the space DiT and SiT work in; their configs convert and sample latents (making the
    latents and decoding samples need the VAE, which this framework does not include)."""
    config = _image_base("npz", 32)
    config.data.num_channels = 4
    config.data.random_flip = False
    return config

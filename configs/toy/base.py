"""Base of the 2-D toy configs: a residual MLP score model on a VP SDE, trained on CPU in ~a minute.

    python launch.py --config configs/toy/gmm.py --workdir runs/toy_gmm

Not a config on its own (it names no dataset); the files next to it import and fill it. Written
out in full rather than from configs/datasets.py and configs/presets.py: it is the smallest
complete config (every field without a default in score_sde/config/, plus what the toys change).
"""

import ml_collections


def get_config(dataset: str = "toy/gmm") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 42

    config.training = training = ml_collections.ConfigDict()
    training.sde = "vpsde"
    training.continuous = True
    training.reduce_mean = True
    training.likelihood_weighting = False
    training.batch_size = 512
    training.n_iters = 3000
    training.n_jitted_steps = 50  # optimizer steps per dispatch (lax.scan)
    training.log_freq = 250
    training.eval_freq = 500
    training.snapshot_freq = 1000
    training.snapshot_freq_for_preemption = 500
    training.snapshot_sampling = True
    training.eval_after_training = True  # the toy report: PC + ODE samples, log-likelihood, plot

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.method = "pc"
    sampling.predictor = "reverse_diffusion"
    sampling.corrector = "langevin"
    sampling.snr = 0.16
    sampling.langevin_norm = "batch"  # ours: the step does not change with the device count
    sampling.n_steps_each = 1
    sampling.noise_removal = True
    sampling.probability_flow = False
    sampling.batch_size = 2000  # samples per sampler call (sample mode, snapshot samples)
    sampling.num_samples = 2000  # sample mode: total samples

    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.begin_ckpt = -1  # -1: the latest checkpoint only
    evaluate.end_ckpt = -1
    evaluate.batch_size = 1000
    evaluate.enable_loss = True
    evaluate.enable_bpd = True  # toys: test log-likelihood in nats (bits/dim needs 8-bit data)
    evaluate.bpd_dataset = "test"
    evaluate.num_bpd_examples = 2000  # test examples for the likelihood (-1: the whole split)
    evaluate.hutchinson_type = "exact"
    evaluate.rtol = 1e-4
    evaluate.atol = 1e-4
    evaluate.enable_sampling = True
    evaluate.num_samples = 2000
    evaluate.samplers = ("pc", "ode")

    config.data = data = ml_collections.ConfigDict()
    data.dataset = dataset  # or 'npz' with --config.data.path=points.npz (arrays [N, 2])
    data.dim = 2  # raw points: not centered, no flips

    config.model = model = ml_collections.ConfigDict()
    model.name = "mlp"  # 3 residual layers, Fourier noise embedding, swish: the defaults
    model.nf = 64
    model.num_scales = 500  # sampler steps
    model.ema_rate = 0.99  # short runs: a slow EMA would still remember the init

    config.optim = optim = ml_collections.ConfigDict()
    optim.lr = 2e-3
    optim.warmup = 200
    return config

"""InceptionV3 (FID variant): preprocessing, shapes, weight conversion, pytorch-fid parity.

The forward pass at 299x299 is slow on CPU: one module-scoped model and few calls at batch 2-4.
Parity with pytorch-fid runs only where torch and pytorch_fid are importable.
"""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from score_sde.evaluation import evaluator, inception


@pytest.fixture(scope="module")
def flat_weights():
    return inception.random_flat_weights(0)


@pytest.fixture(scope="module")
def model(flat_weights):
    return inception.model_from_flat(flat_weights)


def _torch_bilinear(x: np.ndarray, out: int) -> np.ndarray:
    """F.interpolate(mode='bilinear', align_corners=False) in numpy, x [H, W]."""

    def axis(n_in):
        src = np.maximum((np.arange(out) + 0.5) * n_in / out - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    r0, r1, wr = axis(x.shape[0])
    c0, c1, wc = axis(x.shape[1])
    top = x[r0][:, c0] * (1 - wc) + x[r0][:, c1] * wc
    bottom = x[r1][:, c0] * (1 - wc) + x[r1][:, c1] * wc
    return top * (1 - wr[:, None]) + bottom * wr[:, None]


def test_preprocessing_matches_pytorch_fid():
    rng = np.random.default_rng(0)
    for shape in [(8, 8), (32, 32), (400, 350)]:  # up- and downsampling (no antialias)
        img = rng.random(shape).astype(np.float32)
        ours = np.asarray(inception.preprocess(jnp.asarray(img)[None, :, :, None]))[0, :, :, 0]
        ref = 2 * _torch_bilinear(img.astype(np.float64), 299) - 1
        # float32 interpolation weights: ~5e-5 at worst (one 8-bit level is 7.8e-3 here).
        np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_to_inception_input_rounds_to_8_bit():
    x = jnp.asarray([[[[0.5 / 255 + 1e-3], [1.4], [-0.2]]]])  # [1, 1, 3, 1]
    out = np.asarray(evaluator.to_inception_input(x))
    assert out.shape == (1, 1, 3, 3)
    np.testing.assert_allclose(out[0, 0, :, 0], [1 / 255, 1.0, 0.0], atol=1e-7)
    u8 = np.asarray(evaluator.to_inception_input(jnp.full((1, 2, 2, 3), 255, jnp.uint8)))
    np.testing.assert_array_equal(u8, 1.0)


def test_forward_shapes_and_sharded_fn(model):
    """One jitted call on a 4-device mesh: uint8 and gray inputs, gathered to the host."""
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    fn = evaluator.get_inception_fn(model, mesh=mesh)
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.integers(0, 256, (4, 16, 16, 1), dtype=np.uint8))
    out = fn(images)
    assert out["pool_3"].shape == (4, 2048) and out["logits"].shape == (4, 1008)
    pool = np.asarray(out["pool_3"])
    assert np.all(np.isfinite(pool)) and pool.min() >= 0  # mean of ReLU outputs
    assert np.std(pool, axis=0).mean() > 0  # different images, different features
    acc = evaluator.FeatureAccumulator()
    acc.add(out, mask=np.array([True, True, False, True]))
    assert acc.pool_3.shape == (3, 2048) and len(acc) == 3
    np.testing.assert_array_equal(acc.pool_3[2], pool[3])
    metrics = evaluator.compute_metrics(acc)
    assert metrics["num_samples"] == 3 and metrics["inception_score"] >= 1.0


def test_weights_round_trip_and_torch_names(flat_weights):
    # A pytorch-fid style state dict made from our weights converts back to them exactly.
    sd = {}
    inv_bn = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
    for k, v in flat_weights.items():
        parts = k.split("/")
        if parts[0] == "fc":
            sd["fc." + ("weight" if parts[1] == "kernel" else "bias")] = (
                v.T if parts[1] == "kernel" else v
            )
        elif parts[-1] == "kernel":
            sd[".".join(parts[:-1]) + ".weight"] = v.transpose(3, 2, 0, 1)
        else:
            sd[".".join(parts[:-1]) + "." + inv_bn[parts[-1]]] = v
            if parts[-1] == "var":
                sd[".".join(parts[:-1]) + ".num_batches_tracked"] = np.array(0)
    assert "Mixed_7c.branch3x3dbl_3b.conv.weight" in sd and sd["fc.weight"].shape == (1008, 2048)
    back = inception.torch_state_dict_to_flat(sd)
    assert back.keys() == flat_weights.keys()
    for k in back:
        np.testing.assert_array_equal(back[k], flat_weights[k])
    del back["fc/bias"]
    with pytest.raises(ValueError, match="missing"):
        inception.model_from_flat(back)


def test_missing_weights_error(tmp_path):
    with pytest.raises(ValueError, match="pt_inception-2015-12-05"):
        inception.load_inception(tmp_path / "nope.npz")


def test_load_from_file(tmp_path, flat_weights, model):
    path = tmp_path / "w.npz"
    np.savez(path, **flat_weights)
    loaded = inception.load_inception(path)
    flat = inception.model_to_flat(loaded)
    np.testing.assert_array_equal(
        flat["Mixed_6b/branch7x7_2/conv/kernel"], flat_weights["Mixed_6b/branch7x7_2/conv/kernel"]
    )


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("pytorch_fid") is None,
    reason="parity with pytorch-fid needs torch and pytorch_fid (not in the CI environment)",
)
def test_parity_with_pytorch_fid(monkeypatch):
    import torch
    from pytorch_fid import inception as pfi

    torch.manual_seed(0)
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    with torch.no_grad():
        for m in net.modules():  # O(1) activations all the way (default init makes them ~0)
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    monkeypatch.setattr(pfi, "fid_inception_v3", lambda: net)
    wrapper = pfi.InceptionV3([3], resize_input=True, normalize_input=True).eval()

    rng = np.random.default_rng(0)
    images = rng.random((2, 40, 40, 3)).astype(np.float32)
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2)
        pool_ref = wrapper(x)[0].flatten(1)
        logits_ref = net.fc(pool_ref).numpy()
        pool_ref = pool_ref.numpy()
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    ours = inception.model_from_flat(inception.torch_state_dict_to_flat(sd))
    out = jax.jit(lambda x: ours(x))(jnp.asarray(images))
    scale = np.abs(pool_ref).max()
    assert scale > 0.1 and np.std(pool_ref) > 0.01  # a meaningful comparison
    np.testing.assert_allclose(np.asarray(out["pool_3"]), pool_ref, atol=1e-4 * scale, rtol=1e-4)
    scale = np.abs(logits_ref).max()
    np.testing.assert_allclose(np.asarray(out["logits"]), logits_ref, atol=1e-4 * scale, rtol=1e-4)

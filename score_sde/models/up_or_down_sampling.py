"""FIR up/down-sampling (StyleGAN2), NHWC, as used by NCSN++.

upfirdn2d(x, k, up, down, pad): insert up-1 zeros after every pixel, zero-pad (pad0, pad1), convolve
with the 2-D FIR kernel k, keep every down-th pixel. The 1-D kernel [1, 3, 3, 1] becomes the outer
product k k^T / sum, times factor^2 (gain) when upsampling.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_DN = ("NHWC", "HWIO", "NHWC")


def setup_kernel(k) -> np.ndarray:
    """1-D or 2-D FIR taps -> normalized 2-D kernel."""
    k = np.asarray(k, dtype=np.float32)
    if k.ndim == 1:
        k = np.outer(k, k)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"config.model.fir_kernel must be 1-D or square 2-D; got shape {k.shape}")
    return k / np.sum(k)


def upfirdn2d(x: jax.Array, k: np.ndarray, *, up: int = 1, down: int = 1, pad=(0, 0)) -> jax.Array:
    """x [B, H, W, C] -> [B, (H*up + pad0 + pad1 - kh)//down + 1, ..., C] (depthwise FIR)."""
    C = x.shape[-1]
    kh, kw = k.shape
    w = jnp.asarray(k[::-1, ::-1], dtype=x.dtype)  # true convolution
    w = jnp.tile(w[:, :, None, None], (1, 1, 1, C))
    p0, p1 = pad
    padding = [(p0, p1 + up - 1), (p0, p1 + up - 1)]
    return jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=(down, down),
        padding=padding,
        lhs_dilation=(up, up),
        dimension_numbers=_DN,
        feature_group_count=C,
    )


def upsample_2d(x: jax.Array, k=(1, 3, 3, 1), factor: int = 2, gain: float = 1.0) -> jax.Array:
    """[B, H, W, C] -> [B, 2H, 2W, C] with FIR filter k."""
    k = setup_kernel(k) * (gain * factor**2)
    p = k.shape[0] - factor
    return upfirdn2d(x, k, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: jax.Array, k=(1, 3, 3, 1), factor: int = 2, gain: float = 1.0) -> jax.Array:
    """[B, H, W, C] -> [B, H/2, W/2, C] with FIR filter k."""
    k = setup_kernel(k) * gain
    p = k.shape[0] - factor
    return upfirdn2d(x, k, down=factor, pad=((p + 1) // 2, p // 2))


def naive_upsample_2d(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling [B, H, W, C] -> [B, fH, fW, C]."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def naive_downsample_2d(x: jax.Array, factor: int = 2) -> jax.Array:
    """Average pooling [B, H, W, C] -> [B, H/f, W/f, C]."""
    B, H, W, C = x.shape
    return x.reshape(B, H // factor, factor, W // factor, factor, C).mean(axis=(2, 4))


def conv_2d(x: jax.Array, w: jax.Array) -> jax.Array:
    """'same' convolution of x [B, H, W, in] with w [k, k, in, out]."""
    kw = w.shape[0]
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), [(kw // 2, kw // 2)] * 2, dimension_numbers=_DN
    )


def upsample_conv_2d(x: jax.Array, w: jax.Array, k=(1, 3, 3, 1)) -> jax.Array:
    """Transposed stride-2 convolution with w [kw, kw, in, out], then the FIR filter k (gain 4):
    [B, H, W, in] -> [B, 2H, 2W, out] (StyleGAN2's upsample_conv_2d)."""
    kw = w.shape[0]
    kernel = setup_kernel(k) * 4
    p = (kernel.shape[0] - 2) - (kw - 1)
    # transposed stride-2 convolution = dilated input, full padding
    x = jax.lax.conv_general_dilated(
        x, w, (1, 1), [(kw - 1, kw - 1)] * 2, lhs_dilation=(2, 2), dimension_numbers=_DN
    )
    return upfirdn2d(x, kernel, pad=((p + 1) // 2 + 1, p // 2 + 1))


def conv_downsample_2d(x: jax.Array, w: jax.Array, k=(1, 3, 3, 1)) -> jax.Array:
    """The FIR filter k, then a stride-2 'valid' convolution with w [kw, kw, in, out]:
    [B, H, W, in] -> [B, H/2, W/2, out] (StyleGAN2's conv_downsample_2d)."""
    kw = w.shape[0]
    kernel = setup_kernel(k)
    p = (kernel.shape[0] - 2) + (kw - 1)
    x = upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2))
    return jax.lax.conv_general_dilated(x, w, (2, 2), "VALID", dimension_numbers=_DN)

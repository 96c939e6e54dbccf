"""The float DF training step of configs/mnist.toml (784-500-500, N-pair loss, all 9 negatives,
collaboration "previous", plain DF, SGD) written independently in JAX: the same four GEMMs
(x0 W1ᵀ at B×784×500, x̂1 W2ᵀ at 10B×500×500, eᵀ x0 and δ2ᵀ x̂1), jit-compiled.

Prints samples/s of one pass over the first N MNIST training images at a batch size, as JSON.
Run by scripts/bench-reference, which alternates it with `dfforge bench`.
"""
import json
import os
import sys
import time

import numpy as np
import jax
import jax.numpy as jnp


def load_mnist(n):
    root = os.environ.get("DFFORGE_DATA_DIR", "data")
    path = os.path.join(root, "mnist", "train-images-idx3-ubyte")
    with open(path, "rb") as f:
        raw = f.read()
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784)[:n]
    with open(os.path.join(root, "mnist", "train-labels-idx1-ubyte"), "rb") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:n]
    return images.astype(np.float32) / 255.0, labels.astype(np.int32)


C, D0, D1, D2 = 10, 784, 500, 500
EPS, MARGIN, SCALE, LR = 1e-6, 0.05, 20.0, 200.0


def init(seed=1):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    a = np.sqrt(3.0)
    w1 = jax.random.uniform(k1, (D1, D0), jnp.float32, -a, a)
    w2 = jax.random.uniform(k2, (D2, D1), jnp.float32, -a, a)
    return (w1, jnp.zeros(D1), w2, jnp.zeros(D2), jnp.zeros((C, D1)))


def layer_stats(h):
    n = jnp.sqrt(jnp.sum(h * h, axis=-1, keepdims=True))
    return jnp.sum(h * h, axis=-1) / h.shape[-1], h / (n + EPS)


@jax.jit
def step(params, x, y):
    w1, b1, w2, b2, u = params
    bsz = x.shape[0]
    x0 = x / (jnp.sqrt(jnp.sum(x * x, axis=1, keepdims=True)) + EPS)
    a1 = x0 @ w1.T + b1  # GEMM 1: B×784 · 784×500
    # Slot 0 is the label, then every other class (the same work as dfforge's order).
    hyps = (y[:, None] + jnp.arange(C)[None, :]) % C
    h1 = jax.nn.relu(a1[:, None, :] + u[hyps])  # B×C×500
    g1, xh1 = layer_stats(h1)
    xh1f = xh1.reshape(bsz * C, D1)
    h2 = jax.nn.relu(xh1f @ w2.T + b2).reshape(bsz, C, D2)  # GEMM 2: 10B×500 · 500×500
    g2, _ = layer_stats(h2)
    h2f = h2.reshape(bsz * C, D2)

    def betas(gt):
        t = SCALE * (gt[:, 1:] - gt[:, :1] + MARGIN)
        mx = jnp.maximum(jnp.max(t, axis=1, keepdims=True), 0.0)
        e = jnp.exp(t - mx)
        bk = e / (jnp.exp(-mx) + jnp.sum(e, axis=1, keepdims=True))
        return jnp.concatenate([-jnp.sum(bk, axis=1, keepdims=True), bk], axis=1)

    beta1 = betas(g1)  # collaboration "previous": layer 2 adds layer 1's goodness
    beta2 = betas(g2 + g1)
    d1 = (beta1[..., None] * (2.0 / D1)) * h1  # B×C×500
    d2 = ((beta2[..., None] * (2.0 / D2)) * h2).reshape(bsz * C, D2)
    inv_b = 1.0 / bsz
    e = jnp.sum(d1, axis=1)
    gw1 = inv_b * (e.T @ x0)  # GEMM 3: 500×B · B×784
    gb1 = inv_b * jnp.sum(e, axis=0)
    gu = inv_b * jax.ops.segment_sum(d1.reshape(bsz * C, D1), hyps.reshape(-1), C)
    gw2 = inv_b * (d2.T @ xh1f)  # GEMM 4: 500×10B · 10B×500
    gb2 = inv_b * jnp.sum(d2, axis=0)
    new = (w1 - LR * gw1, b1 - LR * gb1, w2 - LR * gw2, b2 - LR * gb2, u - LR * gu)
    _ = h2f
    return new


def main():
    batch, samples = int(sys.argv[1]), int(sys.argv[2])
    x, y = load_mnist(samples)
    batches = [(jnp.asarray(x[i:i + batch]), jnp.asarray(y[i:i + batch]))
               for i in range(0, samples, batch)]
    params = init()
    # Compile every batch shape first (the last one may be short), outside the timing.
    for xb, yb in {tuple(b[0].shape): b for b in batches}.values():
        jax.block_until_ready(step(params, xb, yb))
    t = time.perf_counter()
    for xb, yb in batches:
        params = step(params, xb, yb)
    jax.block_until_ready(params)
    dt = time.perf_counter() - t
    print(json.dumps({"framework": "jax " + jax.__version__, "batch": batch,
                      "samples": samples, "samples_per_second": samples / dt}))


if __name__ == "__main__":
    main()

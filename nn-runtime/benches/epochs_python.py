"""Whole training epochs in PyTorch (eager, CPU) and JAX (jit, CPU), for
comparison with `cargo bench -p nn-runtime --bench epochs` (see the README's
"Training epochs"). Nothing in CI runs this file.

The same two settings as the Rust benchmark: a 64-32-10 ReLU network on
1,438 random samples in batches of 32, and a 784-128-10 one on 4,096 random
samples in batches of 64; softmax cross-entropy (mean over the batch), plain
SGD (learning rate 0.01), float32, a fresh random order each epoch, the last
smaller batch included. Prints the median epoch time over `--epochs` epochs
after two warm-up epochs.

    pip install torch jax numpy
    taskset -c 1 python nn-runtime/benches/epochs_python.py --threads 1
"""

import argparse
import os
import statistics
import sys
import time

SETTINGS = [
    ("digits-64-32-10-b32", 64, 32, 1438, 32),
    ("mnist-784-128-10-b64", 784, 128, 4096, 64),
]
LR = 0.01


def data(n, inputs, seed=1):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(n, inputs)).astype(np.float32)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    return x, y


def median_epoch(run_epoch, epochs):
    for _ in range(2):
        run_epoch()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def bench_torch(threads, epochs):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    results = []
    for name, inputs, hidden, n, batch in SETTINGS:
        x_np, y_np = data(n, inputs)
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        net = torch.nn.Sequential(
            torch.nn.Linear(inputs, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, 10),
        )
        opt = torch.optim.SGD(net.parameters(), lr=LR)
        loss_fn = torch.nn.CrossEntropyLoss()

        def run_epoch():
            order = torch.randperm(n)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                opt.zero_grad(set_to_none=False)
                loss = loss_fn(net(x[idx]), y[idx])
                loss.backward()
                opt.step()

        results.append((f"PyTorch {torch.__version__} eager", name, median_epoch(run_epoch, epochs)))
    return results


def bench_jax(epochs):
    import jax
    import jax.numpy as jnp
    import numpy as np

    results = []
    for name, inputs, hidden, n, batch in SETTINGS:
        x_np, y_np = data(n, inputs)
        x, y = jnp.asarray(x_np), jnp.asarray(y_np.astype(np.int32))
        k1, k2 = jax.random.split(jax.random.PRNGKey(1))
        params = {
            "w1": jax.random.uniform(k1, (inputs, hidden), minval=-0.1, maxval=0.1),
            "b1": jnp.zeros(hidden),
            "w2": jax.random.uniform(k2, (hidden, 10), minval=-0.1, maxval=0.1),
            "b2": jnp.zeros(10),
        }

        def loss_fn(p, xb, yb):
            h = jax.nn.relu(xb @ p["w1"] + p["b1"])
            logits = h @ p["w2"] + p["b2"]
            logp = jax.nn.log_softmax(logits)
            return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

        @jax.jit
        def step(p, x, y, idx):
            xb, yb = x[idx], y[idx]
            g = jax.grad(loss_fn)(p, xb, yb)
            return jax.tree_util.tree_map(lambda a, b: a - LR * b, p, g)

        rng = np.random.default_rng(2)
        state = {"p": params}

        def run_epoch():
            order = jnp.asarray(rng.permutation(n).astype(np.int32))
            p = state["p"]
            for start in range(0, n, batch):
                p = step(p, x, y, order[start : start + batch])
            jax.block_until_ready(p)
            state["p"] = p

        results.append((f"JAX {jax.__version__} jit", name, median_epoch(run_epoch, epochs)))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--only", choices=["torch", "jax"])
    args = ap.parse_args()
    if args.threads == 1:
        # XLA's CPU backend: no multi-threaded Eigen kernels (pin the process
        # to one core too, with taskset, for its other threads).
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    results = []
    if args.only in (None, "torch"):
        results += bench_torch(args.threads, args.epochs)
    if args.only in (None, "jax"):
        results += bench_jax(args.epochs)
    for framework, name, (med, lo, hi) in results:
        print(
            f"{framework:28} {name:22} threads={args.threads}: "
            f"median {med * 1e3:.3f} ms (min {lo * 1e3:.3f}, max {hi * 1e3:.3f})"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()

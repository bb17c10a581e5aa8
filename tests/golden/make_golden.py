#!/usr/bin/python3
"""Writes the golden fixtures for calibration/golden_test.cc.

Implements the paper's Algorithm 1 literally with torch: per-batch logit.mean(0) / logit.var(0)
(unbiased), EMA of both from mean 0 / var 1, beta = running_mean.min(), background row set to
mean 0 / var 1, normed = (logit - running_mean) / sqrt(running_var + eps). Statistics are computed
in float64 so that the fixture, not float32 rounding, is what the C++ side is compared with.

  golden_first.txt         background first (Algorithm 1), eps = 1e-5
  golden_last_official.txt background last, the official code's inference formula
                           (no eps, variance clamped at 1e-11)
  Both also hold the continuous family x̂ = (x − α·μ + β) / (σ² + ε)^(γ/2) on foreground
  logits (background untouched) for a few (α, γ) pairs: family_params, family_normed.
  golden_weighted.txt      frequency-weighted exact statistics (repeat-factor row weights) with
                           numpy: np.average(x, weights=w) and sum(w (x - m)^2) / (sum(w) - 1)

Run: /usr/bin/python3 tests/golden/make_golden.py [--out DIR | --check]
Deterministic; without options it rewrites the committed files. --check regenerates in a temporary
folder and fails unless every number matches the committed files to 1e-12 relative (torch's
reductions may round differently on another CPU, so bytes are not compared).
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def long_tail_logits(gen, rows, num_classes, background_first):
    """Logits whose per-class mean and spread fall with class rarity, like Fig. 2 of the paper."""
    freq = torch.linspace(0.0, 1.0, num_classes, dtype=torch.float64)  # 0 rare .. 1 frequent
    fg_mean = -7.0 + 6.0 * freq
    fg_std = 0.5 + 1.5 * freq
    fg = fg_mean + fg_std * torch.randn(rows, num_classes, generator=gen, dtype=torch.float64)
    bg = 6.0 + 2.0 * torch.randn(rows, 1, generator=gen, dtype=torch.float64)
    x = torch.cat([bg, fg], 1) if background_first else torch.cat([fg, bg], 1)
    return x.float()  # rows arrive as float32, as from a detector


def ema_statistics(batches, momentum):
    width = batches[0].shape[1]
    running_mean = torch.zeros(width, dtype=torch.float64)
    running_var = torch.ones(width, dtype=torch.float64)
    for logit in batches:
        logit = logit.double()
        mean, var = logit.mean(dim=0), logit.var(dim=0)  # unbiased, as BatchNorm's running_var
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * var
    return running_mean, running_var


def check_batchnorm_parity(batches, momentum, running_mean, running_var):
    """BatchNorm1d(affine=False) in training mode keeps the same running statistics."""
    bn = torch.nn.BatchNorm1d(batches[0].shape[1], affine=False, momentum=momentum).double()
    bn.train()
    for logit in batches:
        bn(logit.double())
    assert torch.allclose(bn.running_mean, running_mean, rtol=1e-12, atol=1e-12)
    assert torch.allclose(bn.running_var, running_var, rtol=1e-12, atol=1e-12)


def write(path, header, arrays):
    with open(path, "w") as f:
        for line in header:
            f.write("# " + line + "\n")
        for name, value in arrays:
            t = torch.as_tensor(value, dtype=torch.float64)
            t = t.reshape(1, -1) if t.dim() <= 1 else t
            f.write("%s %d %d\n" % (name, t.shape[0], t.shape[1]))
            for row in t.tolist():
                f.write(" ".join(repr(float(v)) for v in row) + "\n")


def fixture(out_dir, name, num_classes, background_first, momentum, batch_rows, official, seed):
    gen = torch.Generator().manual_seed(seed)
    batches = [long_tail_logits(gen, n, num_classes, background_first) for n in batch_rows]
    test = long_tail_logits(gen, 16, num_classes, background_first)
    bg = 0 if background_first else num_classes

    running_mean, running_var = ema_statistics(batches, momentum)
    check_batchnorm_parity(batches, momentum, running_mean, running_var)
    all_rows = torch.cat(batches).double()
    exact_mean, exact_var = all_rows.mean(dim=0), all_rows.var(dim=0)

    # 2. background calibration (Algorithm 1, literally)
    assert int(running_mean.argmin()) != bg, "fixture needs the minimum mean on a foreground class"
    beta = running_mean.min()
    shifted_mean = running_mean - beta
    shifted_var = running_var.clone()
    shifted_mean[bg] = 0
    shifted_var[bg] = 1
    # 3. normalise
    x = test.double()
    if official:
        normed = (x - shifted_mean) / torch.sqrt(shifted_var.clamp(min=1e-11))
    else:
        normed = (x - shifted_mean) / torch.sqrt(shifted_var + 1e-5)

    # The continuous family (issue 15): α weighs μ, γ is the exponent of the scale; β = min μ.
    family_params = [[0.5, 0.5], [1.0, 0.0], [0.25, 0.75], [0.0, 1.0], [0.75, 0.25]]
    fg = [j for j in range(num_classes + 1) if j != bg]
    family = []
    for alpha, gamma in family_params:
        var = running_var.clamp(min=1e-11) if official else running_var + 1e-5
        out = x.clone()
        out[:, fg] = (x[:, fg] - alpha * running_mean[fg] + beta) / var[fg] ** (gamma / 2)
        family.append(out)

    write(os.path.join(out_dir, name), [
        "Generated by tests/golden/make_golden.py (seed %d); do not edit." % seed,
        "num_classes=%d background=%s momentum=%r official=%d" %
        (num_classes, "first" if background_first else "last", momentum, int(official)),
    ], [
        ("config", [num_classes, 0 if background_first else 1, momentum, int(official)]),
        ("batch_rows", batch_rows),
        ("logits", torch.cat(batches)),
        ("ema_mean", running_mean),
        ("ema_var", running_var),
        ("exact_mean", exact_mean),
        ("exact_var", exact_var),
        ("beta", [beta]),
        ("test_logits", test),
        ("normed", normed),
        ("family_params", family_params),
        ("family_normed", torch.cat(family)),
    ])


def weighted_fixture(out_dir, name, num_classes, seed):
    """Rows with repeat-factor weights, split into shards the C++ test merges in several orders.

    Weights are LVIS-style repeat factors max(1, sqrt(t / f)) for random image frequencies f,
    some 0 (rows that must not count), some fractional; one shard weighs 0 in total. Column 0 sits
    at 1e3 with a spread of 0.05, which a naive sum of squares would lose.
    """
    rng = np.random.default_rng(seed)
    shard_rows = [300, 1, 40, 257, 12, 600, 90]
    rows = sum(shard_rows)
    width = num_classes + 1  # background last
    mean = np.concatenate([[1e3], np.linspace(-7.0, -1.0, num_classes - 1), [6.0]])
    std = np.concatenate([[0.05], np.linspace(0.5, 2.0, num_classes - 1), [2.0]])
    x = (mean + std * rng.standard_normal((rows, width))).astype(np.float32)
    f = rng.uniform(1e-4, 0.2, rows)
    w = np.maximum(1.0, np.sqrt(1e-3 / f))
    w[rng.random(rows) < 0.1] = 0.0
    w[rng.random(rows) < 0.05] = 0.25
    w[300:301] = 0.0  # the one-row shard weighs nothing
    w[341:598] *= 3.0  # a heavier shard
    xd = x.astype(np.float64)
    wmean = np.average(xd, axis=0, weights=w)
    wvar = (w[:, None] * (xd - wmean) ** 2).sum(axis=0) / (w.sum() - 1)
    write(os.path.join(out_dir, name), [
        "Generated by tests/golden/make_golden.py (seed %d); do not edit." % seed,
        "num_classes=%d background=last, frequency-weighted exact statistics (numpy)" % num_classes,
    ], [
        ("config", [num_classes, 1, 0, 0]),
        ("shard_rows", shard_rows),
        ("logits", x),
        ("weights", w),
        ("total_weight", [w.sum()]),
        ("weighted_mean", wmean),
        ("weighted_var", wvar),
        ("unweighted_mean", xd.mean(axis=0)),
        ("unweighted_var", xd.var(axis=0, ddof=1)),
    ])


def read(path):
    arrays, lines = {}, [l for l in open(path) if not l.startswith("#")]
    i = 0
    while i < len(lines):
        name, rows, _ = lines[i].split()
        arrays[name] = torch.tensor([[float(v) for v in l.split()] for l in lines[i + 1:i + 1 + int(rows)]],
                                    dtype=torch.float64)
        i += 1 + int(rows)
    return arrays


def check(generated_dir):
    failures = 0
    for name in ("golden_first.txt", "golden_last_official.txt", "golden_weighted.txt"):
        new, old = read(os.path.join(generated_dir, name)), read(os.path.join(HERE, name))
        for key in old:
            if key not in new or not torch.allclose(new[key], old[key], rtol=1e-12, atol=1e-300):
                print("%s: %s differs from what make_golden.py computes now" % (name, key))
                failures += 1
    print("golden fixtures: %s" % ("reproducible" if not failures else "%d differences" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=HERE, help="folder to write the fixtures to")
    parser.add_argument("--check", action="store_true", help="compare with the committed files")
    args = parser.parse_args()
    out = tempfile.mkdtemp() if args.check else args.out
    os.makedirs(out, exist_ok=True)
    fixture(out, "golden_first.txt", 7, True, 0.1, [64, 64, 48, 100, 7, 64], False, 20240601)
    fixture(out, "golden_last_official.txt", 9, False, 0.05, [32, 128, 5, 90, 2, 40], True, 20240602)
    weighted_fixture(out, "golden_weighted.txt", 8, 20240603)
    if args.check:
        sys.exit(check(out))

#!/usr/bin/python3
"""Writes the drift fixture for calibration/drift_test.cc: logits with known shifts, scored by numpy.

Synthetic logits of 12 foreground classes, background first (column 0), as a detector emits them:
a reference batch, and a live batch in which some classes' means move by a known number of
reference standard deviations and some variances scale by a known factor, others unchanged. The
expected scores are what numpy computes on exactly the stored numbers (float64, ddof=1
variances), with the formulas of docs/drift.md:

  mean_shift          = |mu_live - mu_ref| / sqrt(var_ref)
  log_variance_ratio  = ln(max(var_live, min_variance) / var_ref)
  score               = max(mean_shift, |log_variance_ratio|)

Classes with var_ref < min_variance are not scored; aggregates (overall, and rare / common /
frequent from class_groups, where -1 is no group) are means over the scored classes, the
log-variance-ratio aggregate being the mean of |ln ratio|. Two classes test the edges: class 6
has a constant reference logit (not scored), class 7 a constant live logit (its variance floored).

The logits are stored in the JSON as decimals with 4 digits after the point; both sides read each
into a float64 and round that to float32, as C++'s static_cast<float> does, and every expected
number is computed from those float32 values (read back from the JSON text), so nothing depends
on how the generator's own floats would round.

  drift_golden.json   reference.logits / live.logits (rows of 13), batch_rows (how the C++ test
                      splits them into batches), expected statistics and scores, and the truth the
                      shifts were drawn with (a check of the fixture, not compared in C++)

Run: /usr/bin/python3 tests/golden/make_drift_golden.py [--out DIR | --check]
Deterministic (numpy's PCG64, seed below); without options it rewrites the committed file.
--check regenerates in a temporary folder and fails unless every number matches the committed
file to 1e-12 relative (numpy's pairwise sums may round differently on another CPU).
"""
import argparse
import json
import math
import os
import re
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "drift_golden.json"
SEED = 20240618
MIN_VARIANCE = 1e-12
REFERENCE_BATCHES = [1, 200, 37, 512, 300, 450]  # 1,500 rows
LIVE_BATCHES = [64, 1, 300, 235, 600]  # 1,200 rows
GROUP_NAMES = ["rare", "common", "frequent"]

# Per foreground class: frequency group (0 rare, 1 common, 2 frequent, -1 none), reference mean
# and standard deviation, the live mean's shift in reference standard deviations, the live
# variance's scale, and which side (if any) is a constant logit.
CLASSES = [
    # group  mu     sd   shift  var×  constant
    (0, -7.0, 0.5, 0.0, 1.0, None),  # 0 rare, unchanged
    (0, -6.5, 0.6, 2.0, 1.0, None),  # 1 rare, mean up by 2 sd
    (0, -6.0, 0.7, 0.0, 4.0, None),  # 2 rare, variance x4 (ln 4 = 1.386)
    (0, -6.2, 0.5, -1.0, 0.25, None),  # 3 rare, mean down 1 sd and variance /4
    (1, -5.0, 1.0, 0.0, 1.0, None),  # 4 common, unchanged
    (1, -4.5, 1.0, 0.5, 1.0, None),  # 5 common, mean up by 0.5 sd
    (1, -4.0, 1.2, 0.0, 1.0, "reference"),  # 6 common, constant reference: not scored
    (1, -4.25, 1.1, 0.0, 1.0, "live"),  # 7 common, constant live logit: variance floored
    (2, -3.0, 1.5, 0.0, 1.0, None),  # 8 frequent, unchanged
    (2, -2.5, 1.6, 0.2, 1.0, None),  # 9 frequent, mean up by 0.2 sd
    (2, -2.0, 2.0, 0.0, 2.0, None),  # 10 frequent, variance x2
    (-1, -3.5, 1.0, 3.0, 1.0, None),  # 11 no group (overall only), mean up by 3 sd
]
BACKGROUND = (5.0, 2.0)  # reference; the live background moves too, and must not count
LIVE_BACKGROUND = (6.0, 3.0)


def generate(rng, rows, live):
    """Rows of 13 logits, background first, float64 (rounded to 4 decimals when stored)."""
    x = np.empty((rows, len(CLASSES) + 1))
    bg_mean, bg_sd = LIVE_BACKGROUND if live else BACKGROUND
    x[:, 0] = bg_mean + bg_sd * rng.standard_normal(rows)
    for c, (_, mu, sd, shift, scale, constant) in enumerate(CLASSES):
        if constant == ("live" if live else "reference"):
            x[:, c + 1] = mu
            continue
        if live:
            mu, sd = mu + shift * sd, sd * math.sqrt(scale)
        x[:, c + 1] = mu + sd * rng.standard_normal(rows)
    return x


def as_text(x):
    """Rows as JSON arrays of 4-decimal numbers ("-0.0000" written as "0.0000")."""
    return [[float("%.4f" % v) + 0.0 for v in row] for row in x]


def scores(ref_mean, ref_var, live_mean, live_var, groups):
    classes = []
    for c, group in enumerate(groups):
        j = c + 1  # background first
        if ref_var[j] < MIN_VARIANCE:
            continue
        shift = abs(live_mean[j] - ref_mean[j]) / math.sqrt(ref_var[j])
        lvr = math.log(max(live_var[j], MIN_VARIANCE) / ref_var[j])
        classes.append({"class_index": c, "group": group, "mean_shift": shift,
                        "log_variance_ratio": lvr, "score": max(shift, abs(lvr))})
    classes.sort(key=lambda d: (-d["score"], d["class_index"]))

    def aggregate(members):
        if not members:
            return {"classes": 0, "mean_shift": 0.0, "log_variance_ratio": 0.0, "score": 0.0}
        return {"classes": len(members),
                "mean_shift": float(np.mean([d["mean_shift"] for d in members])),
                "log_variance_ratio": float(np.mean([abs(d["log_variance_ratio"])
                                                     for d in members])),
                "score": float(np.mean([d["score"] for d in members]))}

    overall = aggregate(classes)
    groups_out = {name: aggregate([d for d in classes if d["group"] == g])
                  for g, name in enumerate(GROUP_NAMES)}
    for d in classes:
        del d["group"]
    return classes, overall, groups_out


def check_truth(classes):
    """The fixture shows what it claims: each score near the shift it was drawn with."""
    by_index = {d["class_index"]: d for d in classes}
    assert 6 not in by_index, "class 6 has a constant reference and must not be scored"
    for c, (_, _, _, shift, scale, constant) in enumerate(CLASSES):
        if constant:
            continue
        d = by_index[c]
        assert abs(d["mean_shift"] - abs(shift)) < 0.15, (c, d, shift)
        assert abs(d["log_variance_ratio"] - math.log(scale)) < 0.2, (c, d, scale)
    floored = by_index[7]["log_variance_ratio"]
    assert floored < math.log(MIN_VARIANCE) + 1, "class 7's live variance should be floored"


def fixture(path):
    rng = np.random.default_rng(SEED)
    reference = as_text(generate(rng, sum(REFERENCE_BATCHES), live=False))
    live = as_text(generate(rng, sum(LIVE_BATCHES), live=True))
    # What both sides compute on: the stored decimals, read as float64, rounded to float32.
    ref = np.asarray(reference, dtype=np.float64).astype(np.float32).astype(np.float64)
    liv = np.asarray(live, dtype=np.float64).astype(np.float32).astype(np.float64)
    ref_mean, ref_var = ref.mean(axis=0), ref.var(axis=0, ddof=1)
    live_mean, live_var = liv.mean(axis=0), liv.var(axis=0, ddof=1)
    groups = [g for g, *_ in CLASSES]
    classes, overall, by_group = scores(ref_mean, ref_var, live_mean, live_var, groups)
    check_truth(classes)
    data = {
        "description": "Generated by tests/golden/make_drift_golden.py (seed %d); do not edit. "
                       "Logits are float32 rows of 13, background first." % SEED,
        "num_classes": len(CLASSES),
        "background": "first",
        "min_variance": MIN_VARIANCE,
        "class_groups": groups,
        "truth": {"mean_shift_sd": [abs(s) for _, _, _, s, _, _ in CLASSES],
                  "variance_scale": [v for _, _, _, _, v, _ in CLASSES],
                  "constant": [k or "" for *_, k in CLASSES]},
        "reference": {"batch_rows": REFERENCE_BATCHES, "logits": reference},
        "live": {"batch_rows": LIVE_BATCHES, "logits": live},
        "expected": {
            "reference_mean": ref_mean.tolist(), "reference_variance": ref_var.tolist(),
            "live_mean": live_mean.tolist(), "live_variance": live_var.tolist(),
            "classes": classes, "overall": overall, "groups": by_group,
        },
    }
    with open(path, "w") as f:
        # One row of logits per line keeps the file reviewable and small.
        text = json.dumps(data, indent=1)
        f.write(compact_rows(text) + "\n")


def compact_rows(text):
    """json.dumps(indent=1) with every innermost list of numbers on one line."""
    compact = re.sub(r"\[([^\[\]{}]*)\]",
                     lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    if json.loads(compact) != json.loads(text):
        raise AssertionError("compacting the JSON changed it")
    return compact


def numbers(value, path=""):
    """Every number in a JSON value, by path."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from numbers(v, path + "/" + k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from numbers(v, "%s[%d]" % (path, i))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, float(value)
    else:
        yield path, value


def check(generated):
    with open(generated) as f:
        new = dict(numbers(json.load(f)))
    with open(os.path.join(HERE, NAME)) as f:
        old = dict(numbers(json.load(f)))
    failures = sorted(set(new) ^ set(old))
    for key in sorted(set(new) & set(old)):
        a, b = new[key], old[key]
        same = (math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300) if isinstance(a, float)
                and isinstance(b, float) else a == b)
        if not same:
            failures.append(key)
    for key in failures[:20]:
        print("%s: %s differs from what make_drift_golden.py computes now" % (NAME, key))
    print("drift fixture: %s" % ("reproducible" if not failures else
                                 "%d differences" % len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=HERE, help="folder to write the fixture to")
    parser.add_argument("--check", action="store_true", help="compare with the committed file")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fixture(os.path.join(tmp, NAME))
            sys.exit(check(os.path.join(tmp, NAME)))
    os.makedirs(args.out, exist_ok=True)
    fixture(os.path.join(args.out, NAME))

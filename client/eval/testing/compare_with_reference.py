#!/usr/bin/python3
"""Randomised agreement test: logn_eval_main (C++) vs reference_lvis_eval.py (Python+numpy).

Generates a seeded LVIS-style ground truth and results pair that exercises every rule of the
protocol (federated neg / not-exhaustive lists, ignore flags, crowd flags, segmentation-style
areas that differ from box areas, zero-area boxes, categories without ground truth, images over
the 300-detection cut, score ties, duplicates, sibling-class confusions, all three area ranges),
runs both implementations and requires every metric, including every per-class AP, to agree
within 1e-9. Exit 0 on agreement, 1 otherwise (with the differing metrics listed).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep the source tree clean when ctest imports the reference
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_lvis_eval  # noqa: E402

TOL = 1e-9


def make_case(seed):
    rng = np.random.default_rng(seed)
    num_images, num_cats, size = 70, 40, 640.0
    cat_ids = rng.choice(np.arange(1, 500), size=num_cats, replace=False).tolist()
    img_ids = rng.choice(np.arange(1, 100000), size=num_images, replace=False).tolist()
    cats = [{"id": int(c), "name": "cat%d" % c, "frequency": str(rng.choice(["r", "c", "f"])),
             "image_count": int(rng.integers(1, 500)), "instance_count": int(rng.integers(1, 900))}
            for c in cat_ids]
    with_gt = [c for c in cat_ids if rng.random() > 0.12]  # the rest have no ground truth

    def rand_box(lo=4.0, hi=260.0):
        w = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        h = float(w * np.exp(rng.uniform(-0.6, 0.6)))
        x = float(rng.uniform(0, size - min(w, size - 1)))
        y = float(rng.uniform(0, size - min(h, size - 1)))
        return [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]

    images, anns, dets = [], [], []
    ann_id = 1
    for img in img_ids:
        k = int(rng.integers(0, 9))
        pos = set()
        img_anns = []
        for _ in range(k):
            c = int(rng.choice(with_gt))
            b = rand_box()
            area = b[2] * b[3] * float(rng.uniform(0.45, 1.0))  # segmentation area <= box area
            if rng.random() < 0.02:
                area = 0.0
            a = {"id": ann_id, "image_id": int(img), "category_id": c, "bbox": b, "area": area,
                 "iscrowd": int(rng.random() < 0.08), "segmentation": [[0, 0, 1, 1]]}
            if rng.random() < 0.05:
                a["ignore"] = 1
            ann_id += 1
            img_anns.append(a)
            if area > 0:
                pos.add(c)
            # Sometimes a second instance of the same category nearby (harder matching).
            if rng.random() < 0.25:
                b2 = [b[0] + b[2] * 0.3, b[1] + b[3] * 0.2, b[2], b[3]]
                img_anns.append({"id": ann_id, "image_id": int(img), "category_id": c, "bbox": b2,
                                 "area": b2[2] * b2[3], "iscrowd": 0})
                ann_id += 1
        anns.extend(img_anns)
        others = [c for c in cat_ids if c not in pos]
        neg = rng.choice(others, size=min(len(others), int(rng.integers(0, 8))), replace=False).tolist()
        pos_list = sorted(pos)
        nel = [c for c in pos_list if rng.random() < 0.25]
        images.append({"id": int(img), "width": 640, "height": 640, "neg_category_ids": [int(c) for c in neg],
                       "not_exhaustive_category_ids": [int(c) for c in nel]})

        def score():
            s = float(rng.random())
            return round(s, 1) if rng.random() < 0.3 else s  # ties

        for a in img_anns:
            if rng.random() < 0.75:
                j = rng.normal(0, 0.08, size=4) * np.array([a["bbox"][2], a["bbox"][3]] * 2)
                b = [a["bbox"][0] + j[0], a["bbox"][1] + j[1], max(0.0, a["bbox"][2] + j[2]),
                     max(0.0, a["bbox"][3] + j[3])]
                c = a["category_id"] if rng.random() < 0.85 else int(rng.choice(cat_ids))
                dets.append({"image_id": int(img), "category_id": c, "bbox": [float(v) for v in b],
                             "score": score()})
                if rng.random() < 0.2:  # duplicate
                    dets.append({"image_id": int(img), "category_id": c,
                                 "bbox": [float(v) + 1.0 for v in b], "score": score()})
        # Background false positives: positive, negative and unverified categories alike.
        for _ in range(int(rng.integers(0, 12))):
            c = int(rng.choice(cat_ids + pos_list + [int(x) for x in neg]))
            b = rand_box()
            if rng.random() < 0.03:
                b[2] = 0.0
            dets.append({"image_id": int(img), "category_id": c, "bbox": b, "score": score()})
        if rng.random() < 0.05:  # unknown category: dropped by both
            dets.append({"image_id": int(img), "category_id": 100000, "bbox": rand_box(), "score": 0.5})
    # Two crowded images exceed the 300-per-image cut.
    for img in img_ids[:2]:
        pos_here = [a["category_id"] for a in anns if a["image_id"] == img] or with_gt
        for _ in range(340):
            c = int(rng.choice(pos_here))
            dets.append({"image_id": int(img), "category_id": c, "bbox": rand_box(), "score": score()})
    order = rng.permutation(len(dets))
    dets = [dets[i] for i in order]
    gt = {"info": {"seed": seed}, "images": images, "annotations": anns,
          "categories": [cats[i] for i in rng.permutation(len(cats))]}
    return gt, dets


def check_cli(eval_main, gt_path, dt_path, work_dir):
    """Exit codes: 2 + one line for bad arguments, 1 for unreadable or invalid files, 0 for --help."""
    bad_json = os.path.join(work_dir, "bad.json")
    with open(bad_json, "w") as f:
        f.write('{"images": [')
    cases = [
        ([], 2), (["--gt", gt_path], 2), (["--dt", dt_path], 2), (["--gt"], 2),
        (["--gt", gt_path, "--dt", dt_path, "--bogus"], 2), (["--help"], 0),
        (["--gt", os.path.join(work_dir, "missing.json"), "--dt", dt_path], 1),
        (["--gt", bad_json, "--dt", dt_path], 1), (["--gt", gt_path, "--dt", bad_json], 1),
        (["--gt=" + gt_path, "--dt=" + dt_path], 0),
    ]
    problems = []
    for argv, want in cases:
        r = subprocess.run([eval_main] + argv, capture_output=True, text=True)
        if r.returncode != want:
            problems.append("logn_eval_main %s: exit %d, want %d" % (" ".join(argv), r.returncode, want))
        if want != 0 and len(r.stderr.strip().splitlines()) != 1:
            problems.append("logn_eval_main %s: want a one-line reason, got %r" % (" ".join(argv), r.stderr))
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval-main", required=True, help="path to logn_eval_main")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--check-cli", action="store_true",
                    help="also check logn_eval_main's exit codes on bad arguments and files")
    args = ap.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    gt, dt = make_case(args.seed)
    gt_path = os.path.join(args.work_dir, "gt.json")
    dt_path = os.path.join(args.work_dir, "dt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(dt_path, "w") as f:
        json.dump(dt, f)

    ref = reference_lvis_eval.ReferenceLvisEval(json.load(open(gt_path)), json.load(open(dt_path)))
    ref.evaluate()
    ref.accumulate()
    expected = ref.summarize()

    out = subprocess.run([args.eval_main, "--gt", gt_path, "--dt", dt_path, "--json", "--per-class"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print("logn_eval_main failed (%d): %s" % (out.returncode, out.stderr))
        return 1
    got = json.loads(out.stdout)

    failures = []
    checked = 0
    for key, want in expected.items():
        if key == "per_class_ap":
            continue
        if key not in got:
            failures.append("%s missing from the C++ output" % key)
            continue
        checked += 1
        if abs(got[key] - want) > TOL:
            failures.append("%s: C++ %.17g, reference %.17g" % (key, got[key], want))
    got_pc = {str(e["category_id"]): e["ap"] for e in got.get("per_class", [])}
    for cid, want in expected["per_class_ap"].items():
        checked += 1
        if cid not in got_pc:
            failures.append("per-class %s missing" % cid)
        elif abs(got_pc[cid] - want) > TOL:
            failures.append("per-class AP of %s: C++ %.17g, reference %.17g" % (cid, got_pc[cid], want))

    # The case must exercise the protocol, not sit at trivial values.
    sanity = []
    if not 0.05 < expected["AP"] < 0.95:
        sanity.append("AP %.3f is degenerate" % expected["AP"])
    for key in ("APs", "APm", "APl", "APr", "APc", "APf"):
        if expected[key] < 0:
            sanity.append("%s has no ground truth" % key)
    if sum(1 for v in expected["per_class_ap"].values() if v == -1) == 0:
        sanity.append("no category without ground truth")
    if got["counts"]["kept"] >= got["counts"]["detections"]:
        sanity.append("the 300-per-image cut never triggered")
    if got["counts"]["evaluated"] >= got["counts"]["kept"]:
        sanity.append("the federated filter dropped nothing")

    print("seed %d: %d metrics compared; AP %.6f AP50 %.6f APr %.6f APc %.6f APf %.6f AR@300 %.6f; "
          "detections %d, kept %d, evaluated %d" % (
              args.seed, checked, expected["AP"], expected["AP50"], expected["APr"], expected["APc"],
              expected["APf"], expected["AR@300"], got["counts"]["detections"], got["counts"]["kept"],
              got["counts"]["evaluated"]))
    if args.check_cli:
        failures += check_cli(args.eval_main, gt_path, dt_path, args.work_dir)
    for msg in failures + sanity:
        print("FAIL:", msg)
    return 1 if failures or sanity else 0


if __name__ == "__main__":
    sys.exit(main())

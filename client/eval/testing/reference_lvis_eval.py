#!/usr/bin/python3
"""Reference LVIS bbox evaluation in Python + numpy, the independent oracle for client/eval.

Written from the published LVIS protocol (Gupta et al., LVIS, CVPR 2019, and the structure of
lvis-api's LVISEval: prepare -> evaluate (per image, category, area range) -> accumulate ->
summarize), not from the C++ evaluator, so that the two cannot share a bug by construction.
Deliberately a different style from the C++: dictionaries keyed by (image, category), numpy
matrices for IoU and matching state, numpy cumulative sums.

Usage: reference_lvis_eval.py --gt GT.json --dt RESULTS.json [--out metrics.json]
Prints (or writes) {"AP": ..., ..., "per_class_ap": {"<category id>": ap, ...}}; -1 marks "no
ground truth to measure against", as lvis-api does.
"""
import argparse
import json
import sys
from collections import defaultdict, OrderedDict

import numpy as np


class Params:
    def __init__(self):
        # linspace (not arange), exactly as lvis-api, so 0.5 and 0.75 are hit exactly.
        self.iou_thrs = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
        self.rec_thrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
        self.max_dets = 300
        self.area_rng = [[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]]
        self.area_rng_lbl = ["all", "small", "medium", "large"]
        self.freq_lbl = ["r", "c", "f"]


def box_iou(dt_boxes, gt_boxes):
    """IoU matrix [len(dt), len(gt)] of xywh boxes, no crowd regions (LVIS never uses them)."""
    d = np.asarray(dt_boxes, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    dx2 = d[:, 0] + d[:, 2]
    dy2 = d[:, 1] + d[:, 3]
    gx2 = g[:, 0] + g[:, 2]
    gy2 = g[:, 1] + g[:, 3]
    iw = np.minimum(dx2[:, None], gx2[None, :]) - np.maximum(d[:, 0][:, None], g[:, 0][None, :])
    ih = np.minimum(dy2[:, None], gy2[None, :]) - np.maximum(d[:, 1][:, None], g[:, 1][None, :])
    inter = iw * ih
    union = (d[:, 2] * d[:, 3])[:, None] + (g[:, 2] * g[:, 3])[None, :] - inter
    out = np.zeros((len(d), len(g)), dtype=np.float64)
    ok = (iw > 0) & (ih > 0)
    out[ok] = inter[ok] / union[ok]
    return out


class ReferenceLvisEval:
    def __init__(self, gt, results, params=None):
        self.gt = gt
        self.params = params or Params()
        self.img_ids = sorted(img["id"] for img in gt["images"])
        self.cat_ids = sorted(cat["id"] for cat in gt["categories"])
        self.cats = {cat["id"]: cat for cat in gt["categories"]}
        self.imgs = {img["id"]: img for img in gt["images"]}
        self.results = self._load_results(results)

    def _load_results(self, results):
        # At most max_dets per image over all categories, highest score first (stable on ties);
        # images keep their order of first appearance.
        per_img = OrderedDict()
        for det in results:
            per_img.setdefault(det["image_id"], []).append(dict(det))
        out = []
        for img_id, dets in per_img.items():
            if len(dets) > self.params.max_dets:
                dets = sorted(dets, key=lambda d: d["score"], reverse=True)[: self.params.max_dets]
            out.extend(dets)
        for i, det in enumerate(out):
            det["area"] = det["bbox"][2] * det["bbox"][3]
            det["id"] = i + 1
        unknown = set(d["image_id"] for d in out) - set(self.img_ids)
        if unknown:
            raise ValueError("results refer to images not in the ground truth: %s" % sorted(unknown)[:5])
        return out

    def _select(self, anns):
        """lvis-api's get_ann_ids(img_ids, cat_ids): by image (sorted ids), then file order;
        known categories only; 0 < area < inf, strictly."""
        by_img = defaultdict(list)
        for ann in anns:
            by_img[ann["image_id"]].append(ann)
        cat_set = set(self.cat_ids)
        out = []
        for img_id in self.img_ids:
            for ann in by_img.get(img_id, []):
                if ann["category_id"] in cat_set and 0 < ann["area"] < float("inf"):
                    out.append(ann)
        return out

    def prepare(self):
        gts = self._select(self.gt["annotations"])
        dts = self._select(self.results)
        self.gts = defaultdict(list)
        positive = defaultdict(set)
        for g in gts:
            self.gts[g["image_id"], g["category_id"]].append(g)
            positive[g["image_id"]].add(g["category_id"])
        negative = {i["id"]: set(i["neg_category_ids"]) for i in self.gt["images"]}
        self.not_exhaustive = {i["id"]: set(i["not_exhaustive_category_ids"]) for i in self.gt["images"]}
        self.dts = defaultdict(list)
        for d in dts:
            i, c = d["image_id"], d["category_id"]
            if c in positive[i] or c in negative[i]:
                self.dts[i, c].append(d)

    def evaluate_img(self, img_id, cat_id, area_rng):
        gt = self.gts.get((img_id, cat_id), [])
        dt = self.dts.get((img_id, cat_id), [])
        if not gt and not dt:
            return None
        lo, hi = area_rng
        gt_ignore_flag = np.array(
            [1 if (g.get("ignore", 0) or g["area"] < lo or g["area"] > hi) else 0 for g in gt], dtype=np.int64)
        gt_order = np.argsort(gt_ignore_flag, kind="mergesort")
        gt = [gt[k] for k in gt_order]
        gt_ig = gt_ignore_flag[gt_order]
        dt_order = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[k] for k in dt_order]
        ious = box_iou([d["bbox"] for d in dt], [g["bbox"] for g in gt]) if gt and dt else None

        T = len(self.params.iou_thrs)
        gt_matched = np.zeros((T, len(gt)), dtype=bool)
        dt_matched = np.zeros((T, len(dt)), dtype=bool)
        dt_ig = np.zeros((T, len(dt)), dtype=bool)
        if ious is not None:
            for t, thr in enumerate(self.params.iou_thrs):
                for di in range(len(dt)):
                    best = min(thr, 1 - 1e-10)
                    match = -1
                    for gi in range(len(gt)):
                        if gt_matched[t, gi]:
                            continue
                        # A regular match is never traded for an ignored one (ignored gts sort last).
                        if match > -1 and gt_ig[match] == 0 and gt_ig[gi] == 1:
                            break
                        if ious[di, gi] < best:
                            continue
                        best = ious[di, gi]
                        match = gi
                    if match == -1:
                        continue
                    dt_ig[t, di] = bool(gt_ig[match])
                    dt_matched[t, di] = True
                    gt_matched[t, match] = True
        # Unmatched detections outside the area range, or of a not-exhaustively annotated
        # category, do not count as false positives.
        nel = self.not_exhaustive[img_id]
        maybe_ignored = np.array(
            [d["area"] < lo or d["area"] > hi or d["category_id"] in nel for d in dt], dtype=bool)
        dt_ig = dt_ig | (~dt_matched & maybe_ignored[None, :])
        return {
            "scores": np.array([d["score"] for d in dt], dtype=np.float64),
            "dt_matched": dt_matched,
            "dt_ignore": dt_ig,
            "gt_ignore": gt_ig,
        }

    def evaluate(self):
        self.prepare()
        self.eval_imgs = {}
        for c in self.cat_ids:
            for a, rng in enumerate(self.params.area_rng):
                self.eval_imgs[c, a] = [
                    e for e in (self.evaluate_img(i, c, rng) for i in self.img_ids) if e is not None]

    def accumulate(self):
        p = self.params
        T, R, K, A = len(p.iou_thrs), len(p.rec_thrs), len(self.cat_ids), len(p.area_rng)
        self.precision = -np.ones((T, R, K, A))
        self.recall = -np.ones((T, K, A))
        for k, c in enumerate(self.cat_ids):
            for a in range(A):
                E = self.eval_imgs[c, a]
                if not E:
                    continue
                scores = np.concatenate([e["scores"] for e in E])
                order = np.argsort(-scores, kind="mergesort")
                matched = np.concatenate([e["dt_matched"] for e in E], axis=1)[:, order]
                ignored = np.concatenate([e["dt_ignore"] for e in E], axis=1)[:, order]
                gt_ig = np.concatenate([e["gt_ignore"] for e in E])
                n_gt = int(np.count_nonzero(gt_ig == 0))
                if n_gt == 0:
                    continue
                tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
                fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
                for t in range(T):
                    n = tp.shape[1]
                    rc = tp[t] / n_gt
                    self.recall[t, k, a] = rc[-1] if n else 0.0
                    pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
                    # Interpolate: precision at recall r is the best precision at any recall >= r.
                    pr = np.maximum.accumulate(pr[::-1])[::-1] if n else pr
                    idx = np.searchsorted(rc, p.rec_thrs, side="left")
                    q = np.zeros(R)
                    valid = idx < n
                    q[valid] = pr[idx[valid]]
                    self.precision[t, :, k, a] = q

    def _mean(self, s):
        v = s[s > -1]
        return float(np.mean(v)) if v.size else -1.0

    def summarize(self):
        p = self.params
        prec, rec = self.precision, self.recall
        t50 = np.where(p.iou_thrs == 0.5)[0]
        t75 = np.where(p.iou_thrs == 0.75)[0]
        groups = {lbl: [k for k, c in enumerate(self.cat_ids) if self.cats[c]["frequency"] == lbl]
                  for lbl in p.freq_lbl}
        out = OrderedDict()
        out["AP"] = self._mean(prec[:, :, :, 0])
        out["AP50"] = self._mean(prec[t50][:, :, :, 0])
        out["AP75"] = self._mean(prec[t75][:, :, :, 0])
        out["APs"] = self._mean(prec[:, :, :, 1])
        out["APm"] = self._mean(prec[:, :, :, 2])
        out["APl"] = self._mean(prec[:, :, :, 3])
        out["APr"] = self._mean(prec[:, :, groups["r"], 0])
        out["APc"] = self._mean(prec[:, :, groups["c"], 0])
        out["APf"] = self._mean(prec[:, :, groups["f"], 0])
        out["AR@300"] = self._mean(rec[:, :, 0])
        out["ARs@300"] = self._mean(rec[:, :, 1])
        out["ARm@300"] = self._mean(rec[:, :, 2])
        out["ARl@300"] = self._mean(rec[:, :, 3])
        out["per_class_ap"] = OrderedDict(
            (str(c), self._mean(prec[:, :, k, 0])) for k, c in enumerate(self.cat_ids))
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gt", required=True)
    ap.add_argument("--dt", required=True)
    ap.add_argument("--out")
    args = ap.parse_args()
    with open(args.gt) as f:
        gt = json.load(f)
    with open(args.dt) as f:
        dt = json.load(f)
    ev = ReferenceLvisEval(gt, dt)
    ev.evaluate()
    ev.accumulate()
    metrics = ev.summarize()
    text = json.dumps(metrics, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Generates LogN Serve's long-tail detection benchmark: an LVIS-format dataset (train + val JSON
and PNG images) of synthetic objects in visually confusable families.

    generate.py --out DIR [--seed N] [--scale full|tiny] [--image-size PX] [--format png|jpeg]
                [--workers N]

writes DIR/train.json, DIR/val.json, DIR/train/<id>.png, DIR/val/<id>.png (or .jpg) and
DIR/summary.json.
The output is a pure function of (seed, scale, image size): the layout is drawn by one seeded
generator in the main process and every image is drawn from its own seed, so the number of
worker processes does not change a byte. docs/evaluation.md describes the dataset.

Design (why it is hard in the way LVIS is hard):
  - 10 shape families x 10 siblings = 100 classes (tiny: 3 x 4). Siblings share the shape and
    differ only by a +-14 degree hue shift and a fine texture (solid, horizontal or vertical
    stripes, dots, checker) that blurs away on small objects, so a classifier biased towards a
    frequent sibling really does take the rare one for it.
  - Every family mixes rare, common and frequent members, so each rare class has frequent
    look-alikes.
  - Training images per class follow LVIS's shape: rare 1-10, common 11-100, frequent > 100
    (about a quarter rare, a third common); frequency / image_count / instance_count are
    measured on the generated train split, with LVIS's rule.
  - Several objects per image (1-3 instances per present class), sizes from ~10 px to ~110 px
    (all three COCO area ranges), partial overlaps, clutter (lines, outline frames, grey blobs)
    over a noisy gradient background, and pixel noise.
  - Federated labels as LVIS: each class gets verified-negative images (neg_category_ids,
    about as many as its positive images, at least 8); some multi-instance (image, class)
    pairs lose one annotation and are listed in not_exhaustive_category_ids, as in LVIS where
    annotators flag categories they did not annotate exhaustively.
  - val: full scale, every class is in at least 30 val images (rare ones included; frequent
    classes in 20 % of their training count, up to 60), so that a random half of val still holds
    every class in several images; ~1,000 images. Tiny: at least 5. The train split does not
    depend on the val size (see main()).
"""
import argparse
import colorsys
import json
import math
import multiprocessing
import os
import struct
import sys
import time
import zlib

import numpy as np

FAMILIES = ["disc", "square", "triangle", "diamond", "cross", "ring", "star", "hexagon", "bar", "heart"]
TEXTURES = ["solid", "hstripes", "vstripes", "dots", "checker"]
HUE_SHIFT = 14.0  # degrees between a family's base hue and each sibling tone
TONES = [("warm", +1), ("cool", -1)]

SCALES = {
    # classes per family, families, rare/common/frequent members per family (cycled),
    # train images per class range per group, val images per class, classes per image.
    "full": dict(families=10, siblings=10, image_size=160,
                 rare=[3, 3, 3, 3, 3, 2, 2, 2, 2, 2], common=[4, 4, 4, 3, 3, 3, 3, 3, 3, 3],
                 rare_range=(1, 10), common_range=(11, 100), frequent_range=(101, 300),
                 val_min=30, val_fraction=0.2, classes_per_image=3.5,
                 # The val layout this scale had first (8 images per class, 10 % of train): still
                 # drawn from the main generator and discarded, so that everything the main
                 # generator draws after it (the train split's federated labels) is unchanged.
                 legacy_val=(8, 0.1)),
    "tiny": dict(families=3, siblings=4, image_size=128,
                 rare=[2, 1, 2], common=[2, 3, 2],
                 rare_range=(1, 10), common_range=(11, 16), frequent_range=None,
                 val_min=5, val_fraction=0.0, classes_per_image=3.0),
}
NOT_EXHAUSTIVE_RATE = 0.15  # of (image, class) pairs with >= 2 instances
MIN_NEGATIVE_IMAGES = 8


# ----------------------------------------------------------------------------------------------
# Classes and the long-tail layout (main process, one seeded generator).

def make_classes(scale, rng):
    cfg = SCALES[scale]
    classes = []
    for f in range(cfg["families"]):
        family = FAMILIES[f]
        variants = [(tone, sign, tex) for tex in TEXTURES for tone, sign in TONES][: cfg["siblings"]]
        if scale == "tiny":  # keep the tone pair, vary the texture: the hardest siblings
            variants = [(t, s, x) for x in TEXTURES[:2] for t, s in TONES][: cfg["siblings"]]
        n_rare = cfg["rare"][f % len(cfg["rare"])]
        n_common = cfg["common"][f % len(cfg["common"])]
        groups = ["r"] * n_rare + ["c"] * n_common + ["f"] * (len(variants) - n_rare - n_common)
        groups = [groups[i] for i in rng.permutation(len(groups))]
        base_hue = 360.0 * f / cfg["families"]
        for (tone, sign, texture), group in zip(variants, groups):
            classes.append(dict(
                id=len(classes) + 1, name="%s_%s-%s" % (family, tone, texture), family=family,
                family_index=f, hue=(base_hue + sign * HUE_SHIFT) % 360.0, texture=texture,
                target_group=group))
    return classes


def log_uniform_int(rng, lo, hi):
    return int(min(hi, max(lo, round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))))


def train_targets(classes, scale, rng):
    cfg = SCALES[scale]
    out = []
    for c in classes:
        if c["target_group"] == "r":
            out.append(int(rng.integers(cfg["rare_range"][0], cfg["rare_range"][1] + 1)))
        elif c["target_group"] == "c":
            out.append(log_uniform_int(rng, *cfg["common_range"]))
        else:
            out.append(log_uniform_int(rng, *cfg["frequent_range"]))
    return out


def assign_images(targets, classes_per_image, rng):
    """Places class c in exactly targets[c] distinct images; returns per-image class lists."""
    num_images = max(max(targets), int(math.ceil(sum(targets) / classes_per_image)))
    members = [[] for _ in range(num_images)]
    for c, n in enumerate(targets):
        for i in rng.choice(num_images, size=n, replace=False):
            members[i].append(c)
    # Images that drew no class hold nothing to detect; LVIS images always have annotations.
    return [sorted(m) for m in members if m]


def layout_split(classes, targets, scale, rng):
    cfg = SCALES[scale]
    members = assign_images(targets, cfg["classes_per_image"], rng)
    images = []
    for m in members:
        objects = []
        for c in m:
            n = 1 + min(2, int(rng.poisson(0.35)))  # 1-3 instances of a present class
            objects += [c] * n
        images.append(objects)
    return images


# ----------------------------------------------------------------------------------------------
# Drawing (workers; each image from its own seed).

def shape_mask(family, u, v):
    """u, v: coordinates in [-1, 1] across the object's box (v grows downwards)."""
    if family == "disc":
        return u * u + v * v <= 1.0
    if family in ("square", "bar"):
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if family == "triangle":
        return (v <= 1.0) & (np.abs(u) <= (v + 1.0) / 2.0)
    if family == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if family == "cross":
        return ((np.abs(u) <= 0.34) | (np.abs(v) <= 0.34)) & (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if family == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.36)
    if family == "star":
        r = np.sqrt(u * u + v * v)
        theta = np.arctan2(v, u)
        return r <= 0.5 + 0.5 * (0.5 + 0.5 * np.cos(5 * theta + math.pi / 2))
    if family == "hexagon":  # flat-topped, vertices at (+-1, 0) and (+-0.5, +-0.87)
        au, av = np.abs(u), np.abs(v)
        return (av <= 0.87) & (0.87 * au + 0.5 * av <= 0.87)
    if family == "heart":
        x = u * 1.25
        y = -v * 1.25 + 0.25
        return (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0.0
    raise ValueError(family)


def texture_pattern(texture, yy, xx):
    if texture == "solid":
        return np.zeros(yy.shape, dtype=bool)
    if texture == "hstripes":
        return (yy // 2) % 2 == 1
    if texture == "vstripes":
        return (xx // 2) % 2 == 1
    if texture == "dots":
        return ((yy % 5) < 2) & ((xx % 5) < 2)
    if texture == "checker":
        return ((yy // 2 + xx // 2) % 2) == 1
    raise ValueError(texture)


def hsv_rgb(h_deg, s, v):
    return np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, min(1, max(0, s)), min(1, max(0, v)))) * 255.0


def background(rng, size):
    c0 = hsv_rgb(rng.uniform(0, 360), rng.uniform(0.0, 0.25), rng.uniform(0.35, 0.85))
    c1 = hsv_rgb(rng.uniform(0, 360), rng.uniform(0.0, 0.25), rng.uniform(0.35, 0.85))
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = np.clip((xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle) + 0.5, 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t
    # Low-frequency blotches: an 8x8 random grid, upsampled.
    grid = rng.normal(0, 18, size=(8, 8, 1))
    cell = int(math.ceil(size / 8))
    img = img + np.kron(grid, np.ones((cell, cell, 1)))[:size, :size]
    return img.astype(np.float32)


def add_clutter(img, rng, size):
    """Distractors that belong to no class: thin lines, outline frames and grey blobs."""
    for _ in range(int(rng.integers(2, 7))):  # lines
        x0, y0, x1, y1 = rng.uniform(0, size, 4)
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        xs = np.clip(np.linspace(x0, x1, n).astype(int), 0, size - 1)
        ys = np.clip(np.linspace(y0, y1, n).astype(int), 0, size - 1)
        img[ys, xs] = hsv_rgb(rng.uniform(0, 360), rng.uniform(0, 0.6), rng.uniform(0.1, 1.0))
    for _ in range(int(rng.integers(0, 3))):  # outline frames
        w, h = rng.integers(8, max(9, size // 3), 2)
        x, y = rng.integers(0, size - w), rng.integers(0, size - h)
        col = hsv_rgb(rng.uniform(0, 360), rng.uniform(0, 0.5), rng.uniform(0.2, 1.0))
        img[y, x:x + w] = col
        img[y + h - 1, x:x + w] = col
        img[y:y + h, x] = col
        img[y:y + h, x + w - 1] = col
    for _ in range(int(rng.integers(1, 4))):  # desaturated blobs
        r = rng.uniform(4, size / 8)
        cx, cy = rng.uniform(0, size, 2)
        y0, y1 = int(max(0, cy - r)), int(min(size, cy + r + 1))
        x0, x1 = int(max(0, cx - r)), int(min(size, cx + r + 1))
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        wobble = 1 + 0.3 * np.sin(3 * np.arctan2(yy - cy, xx - cx) + rng.uniform(0, 6))
        m = np.hypot(yy - cy, xx - cx) <= r * wobble
        img[y0:y1, x0:x1][m] = hsv_rgb(0, 0, rng.uniform(0.2, 0.9))


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0, 0.0
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter), inter / min(aw * ah, bw * bh)


def place(rng, size, w, h, boxes):
    for _ in range(30):
        x = int(rng.integers(0, size - w + 1))
        y = int(rng.integers(0, size - h + 1))
        ok = True
        for b in boxes:
            o, cover = iou((x, y, w, h), b)
            if o > 0.15 or cover > 0.4:
                ok = False
                break
        if ok:
            return x, y
    return None


_CLASSES = None  # set in every worker by _init_worker: the class table is not sent per task


def _init_worker(classes):
    global _CLASSES
    _CLASSES = classes


def draw_image(task):
    """Draws one image; returns its annotations as (class index, [x, y, w, h], area)."""
    seed, split_code, index, objects, size, path, fmt = task
    classes = _CLASSES
    rng = np.random.default_rng([seed, split_code, index])
    img = background(rng, size)
    add_clutter(img, rng, size)
    # Sizes first, then place the largest objects first so smaller ones fit around them.
    plans = []
    for c in objects:
        cls = classes[c]
        side = math.exp(rng.uniform(math.log(10), math.log(110)))
        aspect = 2.5 if cls["family"] == "bar" else math.exp(rng.uniform(-0.1, 0.1))
        w = side * math.sqrt(aspect)
        h = side / math.sqrt(aspect)
        plans.append([c, w, h])
    plans.sort(key=lambda p: -p[1] * p[2])
    boxes, anns = [], []
    for c, w, h in plans:
        cls = classes[c]
        spot = None
        while spot is None:
            w = int(min(max(w, 6), size - 2))
            h = int(min(max(h, 6), size - 2))
            spot = place(rng, size, w, h, boxes)
            if spot is None:
                if max(w, h) <= 8:  # always place: accept the overlap
                    spot = (int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1)))
                else:
                    w, h = w * 0.8, h * 0.8
        x, y = spot
        boxes.append((x, y, w, h))
        yy, xx = np.mgrid[y:y + h, x:x + w]
        u = (xx + 0.5 - x) / w * 2 - 1
        v = (yy + 0.5 - y) / h * 2 - 1
        mask = shape_mask(cls["family"], u, v)
        if not mask.any():
            mask[h // 2, w // 2] = True
        hue = cls["hue"] + rng.uniform(-4, 4)
        color = hsv_rgb(hue, 0.75 + rng.uniform(-0.1, 0.1), 0.85 + rng.uniform(-0.12, 0.1))
        shade = np.where(texture_pattern(cls["texture"], yy, xx)[..., None], 0.62, 1.0)
        region = img[y:y + h, x:x + w]
        region[mask] = (color[None, None, :] * shade)[mask]
        ys, xs = np.nonzero(mask)
        bx, by = int(xs.min()), int(ys.min())
        anns.append((c, [x + bx, y + by, int(xs.max()) - bx + 1, int(ys.max()) - by + 1], int(mask.sum())))
    img += rng.normal(0, 6.0, size=img.shape).astype(np.float32)
    pixels = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if fmt == "jpeg":
        write_jpeg(path, pixels)
    else:
        write_png(path, pixels)
    # Return annotations in the order of the image's object list (stable across workers).
    return index, anns


def write_png(path, rgb):
    """Minimal PNG writer (8-bit RGB, no filtering), pure zlib: no imaging library needed."""
    h, w, _ = rgb.shape
    raw = np.zeros((h, w * 3 + 1), dtype=np.uint8)
    raw[:, 1:] = rgb.reshape(h, w * 3)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)))
        f.write(chunk(b"IEND", b""))


def write_jpeg(path, rgb):
    """JPEG (quality 95) through torchvision.io (Debian python3-torchvision); imported lazily so
    the default PNG path needs numpy only."""
    import torch
    import torchvision.io
    data = torchvision.io.encode_jpeg(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))), quality=95)
    with open(path, "wb") as f:
        f.write(data.numpy().tobytes())


# ----------------------------------------------------------------------------------------------
# Assembly.

def render_split(name, split_code, layout, first_id, classes, args, pool):
    os.makedirs(os.path.join(args.out, name), exist_ok=True)
    tasks = []
    for i, objects in enumerate(layout):
        image_id = first_id + i
        tasks.append((args.seed, split_code, i, objects, args.image_size,
                      os.path.join(args.out, name, file_name(image_id, args.format)), args.format))
    results = [None] * len(tasks)
    for index, anns in pool.imap_unordered(draw_image, tasks, chunksize=8):
        results[index] = anns
    return results


def federate(images, annotations, classes, rng):
    """Fills neg_category_ids and not_exhaustive_category_ids the way LVIS's federated
    annotation does: a verified-negative image set per class, and flagged pairs whose
    annotation is incomplete (one instance left unannotated)."""
    by_image = {}
    for a in annotations:
        by_image.setdefault(a["image_id"], []).append(a)
    # not exhaustive: drop one instance of some multi-instance pairs.
    dropped = set()
    for im in images:
        im["not_exhaustive_category_ids"] = []
        per_class = {}
        for a in by_image.get(im["id"], []):
            per_class.setdefault(a["category_id"], []).append(a)
        for c in sorted(per_class):
            if len(per_class[c]) >= 2 and rng.random() < NOT_EXHAUSTIVE_RATE:
                victim = per_class[c][int(rng.integers(len(per_class[c])))]
                dropped.add(victim["id"])
                im["not_exhaustive_category_ids"].append(c)
    kept = [a for a in annotations if a["id"] not in dropped]
    # negatives: about as many verified-absent images as positive ones (at least 8).
    positive = {}
    for a in kept:
        positive.setdefault(a["category_id"], set()).add(a["image_id"])
    image_ids = np.array([im["id"] for im in images])
    neg = {im["id"]: [] for im in images}
    for cls in classes:
        pos = positive.get(cls["id"], set())
        candidates = np.array([i for i in image_ids if i not in pos])
        n = min(len(candidates), max(MIN_NEGATIVE_IMAGES, len(pos)))
        for i in rng.choice(candidates, size=n, replace=False):
            neg[int(i)].append(cls["id"])
    for im in images:
        im["neg_category_ids"] = sorted(neg[im["id"]])
    return kept, len(dropped)


def build_json(images, annotations, categories):
    return {"info": {"description": "LogN Serve synthetic long-tail benchmark (tools/longtail_data)",
                     "version": "1.0"},
            "licenses": [], "images": images, "annotations": annotations, "categories": categories}


def file_name(image_id, fmt):
    return "%06d.%s" % (image_id, "jpg" if fmt == "jpeg" else "png")


def frequency_of(image_count):
    return "r" if image_count <= 10 else ("c" if image_count <= 100 else "f")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Generate the LVIS-format long-tail benchmark.")
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--image-size", type=int, default=None,
                    help="square image side in pixels (default: 160 full, 128 tiny; 96-512)")
    ap.add_argument("--format", choices=["png", "jpeg"], default="png",
                    help="png (lossless, numpy + zlib only) or jpeg (quality 95, needs torchvision)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    cfg = SCALES[args.scale]
    if args.image_size is None:
        args.image_size = cfg["image_size"]
    if not 96 <= args.image_size <= 512:
        ap.error("--image-size must be within 96..512")
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    start = time.time()
    rng = np.random.default_rng([args.seed, 1])
    classes = make_classes(args.scale, rng)
    targets = train_targets(classes, args.scale, rng)
    train_layout = layout_split(classes, targets, args.scale, rng)
    val_targets = [max(cfg["val_min"], int(round(cfg["val_fraction"] * t))) for t in targets]
    if "legacy_val" in cfg:
        # The train split stays byte-identical to the one generated before val grew: the legacy
        # val layout consumes the main generator's draws as it did, and the val layout comes from
        # its own generator (seeded by the seed alone: deterministic).
        legacy_min, legacy_fraction = cfg["legacy_val"]
        layout_split(classes, [max(legacy_min, int(round(legacy_fraction * t))) for t in targets], args.scale, rng)
        val_layout = layout_split(classes, val_targets, args.scale, np.random.default_rng([args.seed, 2]))
    else:
        val_layout = layout_split(classes, val_targets, args.scale, rng)

    os.makedirs(args.out, exist_ok=True)
    with multiprocessing.Pool(args.workers, initializer=_init_worker, initargs=(classes,)) as pool:
        train_anns = render_split("train", 1, train_layout, 1, classes, args, pool)
        val_first = len(train_layout) + 1
        val_anns = render_split("val", 2, val_layout, val_first, classes, args, pool)

    splits = {}
    for name, layout, anns, first in (("train", train_layout, train_anns, 1),
                                      ("val", val_layout, val_anns, val_first)):
        images, annotations = [], []
        for i, per_image in enumerate(anns):
            image_id = first + i
            images.append({"id": image_id, "file_name": file_name(image_id, args.format),
                           "width": args.image_size, "height": args.image_size})
            for c, box, area in per_image:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": classes[c]["id"], "bbox": box, "area": area,
                                    "iscrowd": 0})
        annotations, dropped = federate(images, annotations, classes, rng)
        splits[name] = (images, annotations, dropped)

    # Category statistics come from the train split, as in LVIS (val carries the same table).
    image_sets, instances = {}, {}
    for a in splits["train"][1]:
        image_sets.setdefault(a["category_id"], set()).add(a["image_id"])
        instances[a["category_id"]] = instances.get(a["category_id"], 0) + 1
    categories = []
    for cls in classes:
        n = len(image_sets.get(cls["id"], ()))
        categories.append({"id": cls["id"], "name": cls["name"], "family": cls["family"],
                           "synset": "%s.n.01" % cls["name"], "frequency": frequency_of(n),
                           "image_count": n, "instance_count": instances.get(cls["id"], 0)})
    for name in ("train", "val"):
        images, annotations, _ = splits[name]
        with open(os.path.join(args.out, name + ".json"), "w") as f:
            json.dump(build_json(images, annotations, categories), f, separators=(",", ":"))

    # A summary for people and scripts.
    groups = {g: [c for c in categories if c["frequency"] == g] for g in "rcf"}
    val_images = {}
    for a in splits["val"][1]:
        val_images.setdefault(a["category_id"], set()).add(a["image_id"])
    summary = {
        "seed": args.seed, "scale": args.scale, "image_size": args.image_size, "format": args.format,
        "classes": len(categories), "families": cfg["families"],
        "train": {"images": len(splits["train"][0]), "annotations": len(splits["train"][1]),
                  "not_exhaustive_pairs": splits["train"][2]},
        "val": {"images": len(splits["val"][0]), "annotations": len(splits["val"][1]),
                "not_exhaustive_pairs": splits["val"][2],
                "min_images_per_class": min(len(val_images.get(c["id"], ())) for c in categories)},
        "groups": {g: len(v) for g, v in groups.items()},
        "train_images_per_class": {g: [min((c["image_count"] for c in v), default=0),
                                       max((c["image_count"] for c in v), default=0)]
                                   for g, v in groups.items()},
        "seconds": round(time.time() - start, 1),
    }
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

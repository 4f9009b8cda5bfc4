#!/usr/bin/env python3
"""Contact sheets of duplicate pairs to look at (docs/duplicates.md): each
pair side by side, training image left, each 32x32 image enlarged to 128x128
(nearest neighbour), 12 pairs per PNG, numbered, with both labels.

    misfit bench duplicates ../shared/datasets/cifar10-jpeg.tar.gz \
        --copies 0 --random-pairs 0 --judged judged.csv
    python3 scripts/duplicate-sheets.py judged.csv ../shared/datasets/cifar10-jpeg.tar.gz sheets/sample_

Without --where, the pairs of the precision sample (the `sample` column of
--judged, in its order); --where reported-test|below-detail|below-similarity
(not reported, similarity >= 0.85) draws --n pairs (seeded) of those kinds instead. Needs Pillow.
"""
import argparse
import csv
import io
import random
import tarfile

from PIL import Image, ImageDraw


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("judged")
    ap.add_argument("archive")
    ap.add_argument("prefix")
    ap.add_argument("--where", choices=["reported-test", "below-detail", "below-similarity"])
    ap.add_argument("--detail-cut", type=float, default=0.606, help="the run's detail cut (for below-detail)")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=38)
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.judged)))
    f = lambda k, r: float(r[k]) if r[k] else None
    if a.where is None:
        pairs = sorted((r for r in rows if r["sample"]), key=lambda r: int(r["sample"]))
    else:
        test = [r for r in rows if r["split_b"] == "test"]
        keep = {
            "reported-test": lambda r: r["reported"] == "true",
            "below-detail": lambda r: r["reported"] != "true" and f("similarity", r) >= 0.9
            and f("detail", r) is not None and 0.45 <= f("detail", r) < a.detail_cut,
            "below-similarity": lambda r: r["reported"] != "true" and f("similarity", r) >= 0.85,
        }[a.where]
        pool = sorted((r for r in test if keep(r)), key=lambda r: (r["id_b"], r["id_a"]))
        pairs = random.Random(a.seed).sample(pool, min(a.n, len(pool)))
    want = {r["id_a"] for r in pairs} | {r["id_b"] for r in pairs}
    images = {}
    with tarfile.open(a.archive) as t:
        for m in t:
            name = m.name.lstrip("./")
            if name in want:
                images[name] = Image.open(io.BytesIO(t.extractfile(m).read())).convert("RGB")
    size, gap, head, cols, per = 128, 8, 16, 3, 12
    for s in range(0, len(pairs), per):
        chunk = pairs[s:s + per]
        rows_n = (len(chunk) + cols - 1) // cols
        out = Image.new("RGB", (cols * (2 * size + 3 * gap), rows_n * (size + head + gap) + gap), "white")
        draw = ImageDraw.Draw(out)
        for k, r in enumerate(chunk):
            x0, y0 = (k % cols) * (2 * size + 3 * gap) + gap, (k // cols) * (size + head + gap) + gap
            draw.text((x0, y0), f"#{s + k} {r['label_a'][:5]}|{r['label_b'][:5]} d{r['detail']}", fill="black")
            for j, key in enumerate(["id_a", "id_b"]):
                im = images[r[key]].resize((size, size), Image.NEAREST)
                out.paste(im, (x0 + j * (size + gap), y0 + head))
        out.save(f"{a.prefix}{s // per:02d}.png")
    with open(f"{a.prefix}pairs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sheet_index", "id_a", "id_b", "verdict"])
        for k, r in enumerate(pairs):
            w.writerow([k, r["id_a"], r["id_b"], ""])
    print(f"{len(pairs)} pairs: {a.prefix}NN.png; fill in the verdicts of {a.prefix}pairs.csv")


if __name__ == "__main__":
    main()

"""Contact sheet of flagged training images: each with its given label, the
suggested label and the flag's evidence, to look at whether the flag holds.
usage: python scripts/flag-sheet.py RUN_DIR ARCHIVE.tar.gz OUT.png [--seed N] [--count 12] [--column likely_mislabeled]
Takes a seeded sample of the flagged training images (polars, Pillow)."""
import sys, tarfile, io, argparse
import polars as pl
from PIL import Image, ImageDraw
ap = argparse.ArgumentParser()
ap.add_argument("run"); ap.add_argument("archive"); ap.add_argument("out")
ap.add_argument("--seed", type=int, default=0); ap.add_argument("--count", type=int, default=12)
ap.add_argument("--column", default="likely_mislabeled")
ap.add_argument("--ids", help="a Parquet file with columns id and a bool column named by --column, instead of the run's")
a = ap.parse_args()
s = pl.read_parquet(f"{a.run}/samples.parquet").filter(pl.col("split") == "train")
if a.ids:
    s = s.drop(a.column).join(pl.read_parquet(a.ids).select("id", a.column), on="id")
s = s.filter(pl.col(a.column))
pick = s.sample(n=min(a.count, s.height), seed=a.seed).sort("id")
want = set(pick["id"])
imgs = {}
with tarfile.open(a.archive) as t:
    for m in t:
        key = next((w for w in want if m.isfile() and m.name.endswith(w)), None)
        if key:
            imgs[key] = Image.open(io.BytesIO(t.extractfile(m).read())).convert("RGB").resize((128, 128), Image.LANCZOS)
        if len(imgs) == len(want):
            break
W, H = 128 + 560, 134
sheet = Image.new("RGB", (W, H * pick.height), "white")
d = ImageDraw.Draw(sheet)
for i, r in enumerate(pick.iter_rows(named=True)):
    y = i * H
    sheet.paste(imgs[r["id"]], (0, y))
    d.text((136, y + 8), f"{r['id']}", fill="black")
    d.text((136, y + 28), f"label {r['label_name']}  ->  suggested {r['suggested_label_name']}", fill="black")
    ev = r["evidence"] or ""
    for j in range(0, min(len(ev), 270), 90):
        d.text((136, y + 48 + 16 * (j // 90)), ev[j:j + 90], fill="black")
sheet.save(a.out)
print(f"{pick.height} of {s.height} flagged images -> {a.out}")

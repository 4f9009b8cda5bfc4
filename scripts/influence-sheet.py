"""Contact sheet of the 12 strongest proponents of a run's test mistakes, each
row the test mistake, the proponent and its label, flag and influence.
usage: python scripts/influence-sheet.py RUN_DIR ARCHIVE.tar.gz OUT.png (polars, Pillow)."""
import sys, tarfile, io
import polars as pl
from PIL import Image, ImageDraw
run, archive, out = sys.argv[1:4]
inf = pl.read_parquet(f"{run}/influence.parquet").filter(pl.col("sign") == "proponent")
top = inf.sort("influence", descending=True).unique(subset=["train_id"], keep="first", maintain_order=True).head(12)
want = set(top["train_id"]) | set(top["test_id"])
imgs = {}
with tarfile.open(archive) as t:
    for m in t:
        if not m.isfile():
            continue
        key = next((w for w in want if m.name.endswith(w)), None)
        if key:
            imgs[key] = Image.open(io.BytesIO(t.extractfile(m).read())).convert("RGB").resize((96, 96), Image.NEAREST)
        if len(imgs) == len(want):
            break
W, H = 2 * 96 + 420, 100
sheet = Image.new("RGB", (W, H * len(top)), "white")
d = ImageDraw.Draw(sheet)
for i, r in enumerate(top.iter_rows(named=True)):
    y = i * H
    sheet.paste(imgs[r["test_id"]], (0, y))
    sheet.paste(imgs[r["train_id"]], (100, y))
    flag = f"flagged likely {r['suggested_label_name']}" if r["likely_mislabeled"] else "not flagged"
    d.text((200, y + 10), f"test {r['test_id']}: {r['pair']}", fill="black")
    d.text((200, y + 30), f"proponent {r['train_id']}", fill="black")
    d.text((200, y + 50), f"labelled {r['train_label_name']}, {flag}", fill="black")
    d.text((200, y + 70), f"influence {r['influence']:.3g}, rank {r['rank']}", fill="black")
sheet.save(out)
print(top.select("test_id", "pair", "train_id", "train_label_name", "influence", "likely_mislabeled", "suggested_label_name"))

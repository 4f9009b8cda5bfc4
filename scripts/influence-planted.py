"""How often a run's flipped labels are top proponents of its test mistakes
(influence.parquet), against chance. usage:
  python scripts/influence-planted.py RUN_DIR             the demo: planted.parquet's label flips
  python scripts/influence-planted.py RUN_DIR --folders   an archive of class folders audited with
      --inject-noise: a training image is flipped when its label is not its folder's class
      (ids train/CLASS/FILE)
(a Python with polars; RUN_DIR from `misfit audit`)."""
import sys
import polars as pl
run = sys.argv[1]
inf = pl.read_parquet(f"{run}/influence.parquet")
s = pl.read_parquet(f"{run}/samples.parquet")
classes = s.select("label", "label_name").unique().sort("label")["label_name"].to_list()
if "--folders" in sys.argv[2:]:
    flips = (s.filter(pl.col("split") == "train")
             .with_columns(pl.col("id").str.split("/").list.get(1).alias("true_name"), pl.col("label_name").alias("given_name"))
             .filter(pl.col("true_name") != pl.col("given_name")))
else:
    pl_ = pl.read_parquet(f"{run}/planted.parquet").filter(pl.col("problem") == "label_flip")
    flips = pl_.with_columns(pl.col("true_label").map_elements(lambda c: classes[c], return_dtype=pl.Utf8).alias("true_name"),
                             pl.col("given_label").map_elements(lambda c: classes[c], return_dtype=pl.Utf8).alias("given_name")).filter(pl.col("split")=="train")
n_train = s.filter(pl.col("split") == "train").height
pro = inf.filter(pl.col("sign") == "proponent")
j = pro.join(flips.select(pl.col("id").alias("train_id"), "true_name", "given_name"), on="train_id", how="left")
j = j.with_columns(pl.col("true_name").is_not_null().alias("flip"),
                   ((pl.col("true_name") == pl.col("test_label_name")) & (pl.col("given_name") == pl.col("test_pred_name"))).fill_null(False).alias("flip_in_pair"))
m = pro["test_id"].n_unique()
print(f"test mistakes {m}, proponent slots {pro.height}, training images {n_train}, flipped labels in train {flips.height}")
base = flips.height / n_train
share = j["flip"].mean()
print(f"share of proponent slots that are flipped labels: {share:.3f} vs base rate {base:.4f} ({share/base:.1f}x)")
# in-pair: for each mistake A->B, flips true A labelled B; chance = (#flips A->B)/n_train per slot
pairs = flips.group_by("true_name", "given_name").len()
exp = pro.join(pairs.select(pl.col("true_name").alias("test_label_name"), pl.col("given_name").alias("test_pred_name"), "len"),
               on=["test_label_name", "test_pred_name"], how="left").with_columns(pl.col("len").fill_null(0))
chance = (exp["len"] / n_train).mean()
print(f"share that are flipped labels of the mistake's own pair (true A labelled B for a mistake A -> B): {j['flip_in_pair'].mean():.3f} vs chance {chance:.4f}")
r1 = j.filter(pl.col("rank") == 1)
print(f"mistakes whose strongest proponent is a planted flip: {r1['flip'].sum()} of {r1.height}; of its own pair: {r1['flip_in_pair'].sum()}")
hit = j.group_by("test_id").agg(pl.col("flip_in_pair").any())
print(f"mistakes with a planted flip of their pair among the top 10: {hit['flip_in_pair'].sum()} of {hit.height}")

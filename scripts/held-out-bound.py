"""The held-out bound (src/scores/cut.rs, held_out_bound), ported to Python to
measure it on run folders written before it and on bring-your-own probabilities.
usage (a Python with polars and numpy):
  python scripts/held-out-bound.py RUN_DIR
      a cross-validated audit whose training flags came from the posterior cut:
      flags before and after the bound; precision, recall and F1 against the
      flipped labels when ids are train/CLASS/FILE (an --inject-noise run)
  python scripts/held-out-bound.py --split LABEL_NOISE_SET_DIR
      each model folder's pred_probs.npy, labels.npy, label_errors_mask.npy,
      split at random (seed 0) into 80% training and 20% held-out images
"""
import os, sys
import numpy as np

MIN_PRECISION = 0.5


def thresholds(l, r, k):
    return np.array([r[l == c, c].mean() for c in range(k)])


def noise_matrix(l, r, k, pseudo=1.0):
    t = thresholds(l, r, k)
    c = np.zeros((k, k))
    conf = r >= t - 1e-6
    cnt = conf.sum(1)
    j = np.where(cnt == 1, conf.argmax(1), r.argmax(1))
    ok = cnt > 0
    np.add.at(c, (l[ok], j[ok]), 1)
    for i in range(k):
        c[i, i] = max(c[i, i], 1)
    c = c + pseudo * (1 - np.eye(k))
    lc = np.bincount(l, minlength=k)
    c = c / np.maximum(c.sum(1, keepdims=True), 1e-16) * lc[:, None]
    col = c.sum(0)
    return c / np.where(col > 0, col, 1)


def posterior(r, l, t):
    tot = (r * t[l]).sum(1)
    return np.where(tot > 0, 1 - r[np.arange(len(l)), l] * t[l, l] / np.where(tot > 0, tot, 1), 0)


def bound(flags, suspicion, null, n_held_out):
    """held_out_bound: null = suspicions of the held-out images the cut would flag."""
    train = np.sort(suspicion[flags])[::-1]
    null = np.sort(null)[::-1]
    n, best, j = len(flags), None, 0
    for m in range(1, len(train) + 1):
        tau = train[m - 1]
        if m < len(train) and train[m] == tau:
            continue
        while j < len(null) and null[j] >= tau:
            j += 1
        false = n * j / n_held_out
        if m - false >= MIN_PRECISION * m:
            best = (tau, m, false)
    kept = flags & (suspicion >= best[0]) if best else np.zeros_like(flags)
    return kept, n * len(null) / n_held_out, best


def scored(sel, wrong):
    tp = (sel & wrong).sum()
    p, r = tp / max(sel.sum(), 1), tp / max(wrong.sum(), 1)
    return f"{sel.sum()} flagged, P {p:.2f} R {r:.2f} F1 {2 * p * r / max(p + r, 1e-9):.3f}"


def run_folder(run):
    import json
    import polars as pl
    s = pl.read_parquet(f"{run}/samples.parquet")
    nb = pl.read_parquet(f"{run}/neighbors.parquet")
    cut = json.load(open(f"{run}/run.json"))["scores"]["mislabeled_cut"]
    if cut["rule"] != "noise_prior" or "held_out" in cut:
        sys.exit(f"{run}: the port covers runs cut by the posterior, written before the bound")
    k = len(s["probs"][0])
    idx = {v: i for i, v in enumerate(s["id"].to_list())}
    p = np.stack(s["probs"].to_numpy()).astype(np.float64)
    lab = s["label"].to_numpy()
    tr, te = (s["split"] == "train").to_numpy(), (s["split"] == "test").to_numpy()
    # The combined vote: model probabilities times neighbour shares (+0.05), as combine.rs.
    q = np.zeros((len(idx), k))
    rows = np.array([idx[i] for i in nb["id"].to_list()])
    np.add.at(q, (rows, nb["neighbor_label"].to_numpy()), 1.0 / (0.05 + nb["distance"].to_numpy().astype(np.float64)))
    q /= np.maximum(q.sum(1, keepdims=True), 1e-12)
    r = p * (q + 0.05)
    r /= r.sum(1, keepdims=True)
    lt, rt, le, re = lab[tr], r[tr], lab[te], r[te]
    t = noise_matrix(lt, rt, k)
    st, sd = posterior(rt, lt, t), posterior(re, le, t)
    train = s.filter(pl.col("split") == "train")
    got = np.abs(st - train["label_error_probability"].to_numpy()).max()
    flags = train["likely_mislabeled"].to_numpy()
    null = sd[(re.argmax(1) != le) & (sd >= cut["min_probability"])]
    kept, false_before, best = bound(flags, st, null, te.sum())
    print(f"{run}: posteriors reproduced to {got:.1e}; before: {flags.sum()} flagged, {false_before:.0f} expected false;"
          f" after: {kept.sum()} at suspicion {best[0] if best else None}, expected false {best[2] if best else 0:.0f}")
    wrong = (train["id"].str.split("/").list.get(1) != train["label_name"]).to_numpy()
    if wrong.any():
        print(f"  against {wrong.sum()} flipped labels: before {scored(flags, wrong)}; after {scored(kept, wrong)}")


def split_set(root):
    for model in sorted(os.listdir(root)):
        d = os.path.join(root, model)
        if not os.path.isfile(os.path.join(d, "labels.npy")):
            continue
        p = np.load(f"{d}/pred_probs.npy").astype(np.float64)
        lab, wrong = np.load(f"{d}/labels.npy"), np.load(f"{d}/label_errors_mask.npy").astype(bool)
        k = p.shape[1]
        te = np.random.default_rng(0).random(len(lab)) < 0.2
        tr = ~te
        lt, rt, le, re = lab[tr], p[tr], lab[te], p[te]
        counted = noise_matrix(lt, rt, k, 0.0)
        g = np.log(np.maximum((rt * counted[lt]).sum(1), 1e-12)) - np.log(np.maximum(rt[np.arange(len(lt)), lt], 1e-12))
        cand, cand_te = rt.argmax(1) != lt, re.argmax(1) != le
        if g.mean() + 2 * g.std(ddof=1) / np.sqrt(len(g)) < 0:  # refuted: the disagreement cut
            thr = thresholds(lt, rt, k)
            st = 1 - rt[np.arange(len(lt)), lt] / thr[lt]
            sd = 1 - re[np.arange(len(le)), le] / thr[le]
            flags, null, rule = cand & (st > 0.5), sd[cand_te & (sd > 0.5)], "disagreement"
        else:  # the posterior at the best expected F1
            t = noise_matrix(lt, rt, k)
            st, sd = posterior(rt, lt, t), posterior(re, le, t)
            order = np.argsort(-np.where(cand, st, -1), kind="stable")[: cand.sum()]
            f1 = 2 * np.cumsum(st[order]) / (np.arange(1, len(order) + 1) + st.sum())
            flags = np.zeros(len(lt), bool)
            flags[order[: f1.argmax() + 1]] = True
            null, rule = sd[cand_te & (sd >= st[order[f1.argmax()]])], "posterior"
        kept, _, _ = bound(flags, st, null, te.sum())
        print(f"{root} {model} ({rule}): before {scored(flags, wrong[tr])}; after {scored(kept, wrong[tr])}")


if __name__ == "__main__":
    if sys.argv[1] == "--split":
        split_set(sys.argv[2])
    else:
        run_folder(sys.argv[1])

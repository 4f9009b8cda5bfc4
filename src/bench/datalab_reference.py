"""cleanlab Datalab reference for `misfit bench score`: the label, outlier and
near_duplicate issue types from the same probabilities and embeddings misfit
scores, timed. Used only as a benchmark reference, never by the product.

Usage: datalab_reference.py PROBS.npy LABELS.npy EMBEDDINGS.npy PREFIX

Datalab keeps its defaults except k: each issue type is given k=10 explicitly
(Datalab's default too) to match misfit's k=10. The label type works from the
probabilities (k is then unused); outlier and near_duplicate share one exact
10-nearest-neighbour graph, sklearn NearestNeighbors brute force with the
cosine metric (Datalab's choice for more than 3 feature columns), built by
whichever of the two runs first.

The clock covers Datalab(...) and find_issues, not imports or file reads.
Datalab's printing goes to a buffer, copied to stderr, so stdout holds one JSON
line: {"cleanlab", "seconds", "label", "outlier", "near_duplicate", "n",
"per_type": seconds inside each issue type, "knn_graph": seconds building the
neighbour graph (inside the first of outlier or near_duplicate)}. The flagged
rows of each type go to PREFIX_label.npy, PREFIX_outlier.npy and
PREFIX_near_duplicate.npy (int64). Exits 1 if an issue type failed."""
import contextlib, io, json, sys, time
import numpy as np
import cleanlab
from cleanlab import Datalab
from cleanlab.datalab.internal.issue_manager import knn_graph_helpers
from cleanlab.datalab.internal.issue_manager.duplicate import NearDuplicateIssueManager
from cleanlab.datalab.internal.issue_manager.label import LabelIssueManager
from cleanlab.datalab.internal.issue_manager.outlier import OutlierIssueManager

probs_path, labels_path, emb_path, prefix = sys.argv[1:5]
pred_probs = np.load(probs_path)
labels = np.load(labels_path)
features = np.load(emb_path)
TYPES = ("label", "outlier", "near_duplicate")

# Per-type timing: wrap each manager's find_issues (and the graph build) with a
# clock; two perf_counter calls each, nothing else changes.
times = {}
def clocked(key, f):
    def g(*a, **kw):
        t = time.perf_counter()
        try:
            return f(*a, **kw)
        finally:
            times[key] = times.get(key, 0.0) + time.perf_counter() - t
    return g
for cls in (LabelIssueManager, OutlierIssueManager, NearDuplicateIssueManager):
    cls.find_issues = clocked(cls.issue_name, cls.find_issues)
knn_graph_helpers.create_knn_graph_and_index = clocked("knn_graph", knn_graph_helpers.create_knn_graph_and_index)

log = io.StringIO()
t = time.perf_counter()
with contextlib.redirect_stdout(log):
    lab = Datalab(data={"label": labels}, label_name="label")
    lab.find_issues(
        pred_probs=pred_probs,
        features=features,
        issue_types={name: {"k": 10} for name in TYPES},
    )
secs = time.perf_counter() - t
sys.stderr.write(log.getvalue())

counts = {}
for name in TYPES:
    try:
        flags = lab.get_issues(name)[f"is_{name}_issue"].to_numpy()
    except Exception as e:  # the type failed inside Datalab (its message is above)
        sys.exit(f"Datalab found no {name} issues column: {e}")
    rows = np.flatnonzero(flags).astype(np.int64)
    np.save(f"{prefix}_{name}.npy", rows)
    counts[name] = int(rows.size)
print(json.dumps({
    "cleanlab": cleanlab.__version__,
    "seconds": secs,
    **counts,
    "n": int(labels.shape[0]),
    "per_type": {name: times.get(name) for name in TYPES},
    "knn_graph": times.get("knn_graph"),
}))

"""cleanlab reference for `misfit bench score`: find_label_issues on the same
probabilities and labels, timed. Prints one JSON line and writes the flagged
row indices. Used only as a benchmark reference, never by the product."""
import json, sys, time
import numpy as np
import cleanlab
from cleanlab.filter import find_label_issues

probs_path, labels_path, out_path, method = sys.argv[1:5]
pred_probs = np.load(probs_path)
labels = np.load(labels_path)
t = time.perf_counter()
issues = find_label_issues(labels=labels, pred_probs=pred_probs, filter_by=method)
secs = time.perf_counter() - t
np.save(out_path, np.flatnonzero(issues).astype(np.int64))
print(json.dumps({"cleanlab": cleanlab.__version__, "seconds": secs, "flagged": int(issues.sum())}))

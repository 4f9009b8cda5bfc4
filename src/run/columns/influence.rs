//! The column groups the influence stage (`src/stages/influence.rs`) owns and fills.

use crate::run::schema::{Column, Group};

/// `influence.parquet`: one row per (test mistake, sign, rank).
pub static INFLUENCE: Group = Group {
    stage: "influence",
    columns: &[
        Column { name: "test_id", description: "the misclassified test image" },
        Column { name: "test_label_name", description: "its given label" },
        Column { name: "test_pred_name", description: "the run's (wrong) prediction for it" },
        Column { name: "pair", description: "'given -> predicted' of the test image" },
        Column {
            name: "sign",
            description: "proponent (the training image's gradient step lowers the test image's loss at the wrong prediction: pushes it there) or opponent (raises it)",
        },
        Column { name: "rank", description: "1 = the strongest of its sign for this test image" },
        Column { name: "train_id", description: "the training image" },
        Column { name: "train_label_name", description: "the training image's given label" },
        Column {
            name: "influence",
            description: "TracIn over the last layer: sum over checkpoints of lr x ((p_train - y_train) . (p_test - y_pred)) x (h_train . h_test + 1), h the pooled features (positive for proponents)",
        },
        Column { name: "likely_mislabeled", description: "the training image is flagged likely mislabeled" },
        Column { name: "ambiguous", description: "the training image is flagged ambiguous" },
        Column { name: "outlier", description: "the training image is flagged an outlier" },
        Column { name: "duplicate", description: "the training image is in a duplicate pair" },
        Column { name: "suggested_label_name", description: "the class the training image's combined vote prefers" },
    ],
};

/// `samples.parquet`: influence per training image (null for test images).
pub static SAMPLE_INFLUENCE: Group = Group {
    stage: "influence",
    columns: &[
        Column {
            name: "test_mistakes_supported",
            description: "training images: test mistakes of which it is among the top-10 proponents (see influence.parquet)",
        },
        Column {
            name: "self_influence",
            description: "training images: TracIn of the image with itself at its given label, lr x |p - y|^2 x (|h|^2 + 1) summed over the checkpoints (high = the model fits the label against the image)",
        },
    ],
};

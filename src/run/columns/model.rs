//! The column groups the model stage (`src/stages/model.rs`) owns and fills.

use crate::run::schema::{Column, Group};

/// `samples.parquet`: what the model says of each image (both splits).
pub static SAMPLE_MODEL: Group = Group {
    stage: "model",
    columns: &[
        Column {
            name: "fold",
            description: "cross-validation fold that held the image out (train); null for test or an imported model",
        },
        Column { name: "probs", description: "softmax probabilities; out-of-sample for train images" },
        Column { name: "pred", description: "predicted class index (arg-max of probs)" },
        Column { name: "pred_name", description: "predicted class name" },
        Column { name: "loss", description: "cross-entropy of the given label, -ln probs[label]" },
        Column { name: "self_confidence", description: "probability of the given label" },
        Column { name: "margin", description: "probability of the given label minus the largest other probability" },
        Column { name: "aum", description: "area under the logit margin over training epochs (train only)" },
        Column {
            name: "forgetting_events",
            description: "times the image went from correct to wrong between epochs (train only)",
        },
        Column {
            name: "first_learned_epoch",
            description: "first epoch (1-based) at which the image was classified correctly (train only)",
        },
    ],
};

/// `samples.parquet`: the AUM threshold's flag (after the score columns).
/// `classes.parquet`: how sure the model is of each class's labels.
pub static CLASS_CONFIDENCE: Group = Group {
    stage: "model",
    columns: &[
        Column {
            name: "mean_self_confidence",
            description:
                "mean probability of the given label over the class's training images (out-of-sample when trained here)",
        },
        Column {
            name: "mean_self_confidence_test",
            description: "the same over its test images (null: no test split)",
        },
    ],
};

pub static SAMPLE_AUM_FLAG: Group = Group {
    stage: "model",
    columns: &[Column {
        name: "aum_mislabeled",
        description: "AUM below the threshold-sample threshold (Pleiss et al.; train only, null for threshold samples)",
    }],
};

/// `dynamics.parquet`: one row per training image and epoch of the final model's training.
pub static DYNAMICS: Group = Group {
    stage: "model",
    columns: &[
        Column { name: "id", description: "training image id" },
        Column { name: "epoch", description: "1-based epoch" },
        Column { name: "loss", description: "cross-entropy of the given label in the training pass" },
        Column { name: "margin", description: "logit of the given label minus the largest other logit" },
        Column { name: "correct", description: "whether the given label had the largest logit" },
    ],
};

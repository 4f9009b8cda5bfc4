//! The column groups the selfcheck stage (`src/stages/selfcheck.rs`) owns and fills.

use crate::run::schema::{Column, Group};

/// `selfcheck.parquet`: every flag and score against known bad images.
pub static SELFCHECK: Group = Group {
    stage: "selfcheck",
    columns: &[
        Column { name: "name", description: "flag or score" },
        Column { name: "target", description: "what is known bad" },
        Column { name: "precision", description: "flags: share of flagged images that are bad" },
        Column { name: "recall", description: "flags: share of bad images flagged" },
        Column { name: "f1", description: "flags: harmonic mean of precision and recall" },
        Column { name: "flagged", description: "flags: images flagged" },
        Column { name: "auroc", description: "scores: area under the ROC curve" },
        Column { name: "positives", description: "known bad images" },
        Column { name: "images", description: "images checked" },
    ],
};

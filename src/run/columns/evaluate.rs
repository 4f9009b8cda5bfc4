//! The column groups the evaluate stage (`src/stages/evaluate.rs`) owns and fills.

use crate::run::schema::{Column, Group};

/// `classes.parquet`: each class's test misses.
pub static CLASS_MISSES: Group = Group {
    stage: "evaluate",
    columns: &[
        Column { name: "test_misses", description: "test images of this class predicted as another" },
        Column { name: "miss_rate", description: "test misses over test images (null: the class has no test images)" },
        Column { name: "miss_rate_low", description: "95% Wilson interval, low end (null: no test images)" },
        Column { name: "miss_rate_high", description: "95% Wilson interval, high end (null: no test images)" },
    ],
};

/// `classes.parquet`: the class each class's test images are most often mistaken for.
pub static CLASS_CONFUSED: Group = Group {
    stage: "evaluate",
    columns: &[
        Column {
            name: "top_confused_with",
            description: "the class its test images are most often predicted as, other than itself (null: no misses)",
        },
        Column { name: "top_confused_with_name", description: "that class's name" },
        Column { name: "top_confused_share", description: "share of the class's test images predicted as that class" },
        Column { name: "top_confused_share_low", description: "95% Wilson interval, low end" },
        Column { name: "top_confused_share_high", description: "95% Wilson interval, high end" },
    ],
};

/// `confusion.parquet`: one row per (given, predicted) class pair of the test split, zero counts included.
pub static CONFUSION: Group = Group {
    stage: "evaluate",
    columns: &[
        Column { name: "given", description: "given label (class index)" },
        Column { name: "given_name", description: "given label (class name)" },
        Column { name: "predicted", description: "predicted class index" },
        Column { name: "predicted_name", description: "predicted class name" },
        Column { name: "count", description: "test images with this label and prediction" },
        Column {
            name: "share",
            description: "count over the test images of the given class (null: the class has no test images)",
        },
    ],
};

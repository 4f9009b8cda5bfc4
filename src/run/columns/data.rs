//! The column groups the data stage (`src/stages/data.rs`) owns and fills.

use crate::run::schema::{Column, Group};

/// `samples.parquet`: the key columns of every image (train rows first, in
/// dataset order; every later column follows that order).
pub static SAMPLE_KEYS: Group = Group {
    stage: "data",
    columns: &[
        Column { name: "id", description: "image id, unique in the dataset; the key every table joins on" },
        Column { name: "split", description: "train or test" },
        Column { name: "label", description: "given label, as a class index" },
        Column { name: "label_name", description: "given label, as a class name" },
    ],
};

/// `classes.parquet`: each class and its image counts.
pub static CLASS_COUNTS: Group = Group {
    stage: "data",
    columns: &[
        Column { name: "class", description: "class index" },
        Column { name: "class_name", description: "class name" },
        Column { name: "train_images", description: "training images with this label" },
        Column { name: "test_images", description: "test images with this label" },
    ],
};

/// `planted.parquet` (demo only): the planted problems, keyed by image id.
pub static PLANTED: Group = Group {
    stage: "data",
    columns: &[
        Column { name: "id", description: "image id" },
        Column { name: "split", description: "train or test" },
        Column { name: "problem", description: "label_flip, duplicate_exact, duplicate_near or outlier" },
        Column { name: "given_label", description: "the label the image carries, as a class index" },
        Column { name: "true_label", description: "the image's true class; null for outliers" },
        Column { name: "related_id", description: "for duplicates, the id of the image copied" },
    ],
};

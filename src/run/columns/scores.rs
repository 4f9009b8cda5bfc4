//! The column groups the scores stage (`src/stages/scores.rs`) owns and fills.

use crate::run::schema::{Column, Group};

/// `samples.parquet`: the label-quality columns (null where they do not apply).
pub static SAMPLE_SCORES: Group = Group {
    stage: "scores",
    columns: &[
        Column {
            name: "label_issue",
            description:
                "flagged by confident learning (run on the image's split; null without out-of-sample probabilities)",
        },
        Column { name: "normalized_margin", description: "cleanlab normalized margin (low = suspicious)" },
        Column {
            name: "confidence_weighted_entropy",
            description: "cleanlab confidence-weighted entropy (low = suspicious)",
        },
        Column {
            name: "neighbor_agreement",
            description: "distance-weighted share of neighbours with the image's label",
        },
        Column { name: "neighbor_label", description: "neighbours' weighted majority label" },
        Column { name: "neighbor_label_name", description: "neighbours' weighted majority label, as a name" },
        Column { name: "kth_distance", description: "distance to the k-th nearest training image" },
        Column {
            name: "outlier_percentile",
            description: "share of same-class training images with a smaller k-th distance",
        },
        Column { name: "issue_score", description: "combined label-issue score 1 - r[label] (high = suspicious)" },
        Column { name: "suggested_label", description: "class the combined vote prefers" },
        Column { name: "suggested_label_name", description: "class the combined vote prefers, as a name" },
        Column { name: "suggested_confidence", description: "share of the combined vote for the suggested label" },
        Column {
            name: "likely_mislabeled",
            description: "label likely wrong, another class preferred: label_error_probability at or above the cut of \
                          best expected F1 where the noise is class-conditional, else the label's vote under half its \
                          class's mean (run.json scores.mislabeled_cut says which)",
        },
        Column { name: "ambiguous", description: "model and neighbours split between two or more classes" },
        Column { name: "outlier", description: "far from every training image of its class" },
        Column { name: "duplicate", description: "in a duplicate pair (see duplicates.parquet)" },
        Column { name: "evidence", description: "the evidence in words" },
    ],
};

/// `samples.parquet`: the probability behind `likely_mislabeled` (a group of
/// its own: runs written before it stay readable).
pub static SAMPLE_LABEL_ERROR: Group = Group {
    stage: "scores",
    columns: &[Column {
        name: "label_error_probability",
        description: "probability that the label is wrong: the combined vote weighed by the noise confident learning estimates on the image's split (null without out-of-sample probabilities)",
    }],
};

/// `classes.parquet`: confident learning's noise rate and the flag counts of the class's training images.
pub static CLASS_FLAGS: Group = Group {
    stage: "scores",
    columns: &[
        Column {
            name: "estimated_noise_rate",
            description: "confident learning: estimated share of the class's training labels that are wrong",
        },
        Column { name: "label_issues", description: "training images of the class flagged by confident learning" },
        Column { name: "likely_mislabeled", description: "training images of the class flagged likely mislabeled" },
        Column { name: "ambiguous", description: "training images of the class flagged ambiguous" },
        Column { name: "outliers", description: "training images of the class flagged outliers" },
        Column { name: "duplicates", description: "training images of the class in a duplicate pair" },
    ],
};

/// `classes.parquet`: the same for the test split, when it has out-of-sample probabilities.
pub static CLASS_FLAGS_TEST: Group = Group {
    stage: "scores",
    columns: &[
        Column {
            name: "estimated_noise_rate_test",
            description: "confident learning on the test split: estimated share of the class's test labels that are wrong (null without test images)",
        },
        Column { name: "label_issues_test", description: "test images of the class flagged by confident learning" },
        Column { name: "likely_mislabeled_test", description: "test images of the class flagged likely mislabeled" },
        Column { name: "ambiguous_test", description: "test images of the class flagged ambiguous" },
        Column { name: "outliers_test", description: "test images of the class flagged outliers" },
        Column { name: "duplicates_test", description: "test images of the class in a duplicate pair" },
    ],
};

/// `classes.parquet`: the interval of confident learning's noise rate.
pub static CLASS_NOISE_INTERVAL: Group = Group {
    stage: "scores",
    columns: &[
        Column {
            name: "estimated_noise_rate_low",
            description: "seeded percentile bootstrap 95% interval of estimated_noise_rate (200 resamples of the training images), low end",
        },
        Column { name: "estimated_noise_rate_high", description: "the same, high end" },
    ],
};

/// `embeddings.parquet`: one row per image, its L2-normalised pooled features.
pub static EMBEDDINGS: Group = Group {
    stage: "scores",
    columns: &[
        Column { name: "id", description: "image id" },
        Column { name: "split", description: "train or test" },
        Column { name: "vector", description: "unit-length embedding: the final model's pooled features" },
    ],
};

/// `neighbors.parquet`: the k nearest training images of every image, one row per (image, rank).
pub static NEIGHBORS: Group = Group {
    stage: "scores",
    columns: &[
        Column { name: "id", description: "image id" },
        Column { name: "rank", description: "1 = nearest" },
        Column { name: "neighbor_id", description: "id of the neighbouring training image" },
        Column { name: "distance", description: "distance between the unit embeddings (0 to 2)" },
        Column { name: "neighbor_label", description: "the neighbour's given label" },
        Column { name: "neighbor_label_name", description: "the neighbour's given label, as a name" },
    ],
};

/// `duplicates.parquet`: one row per duplicate pair (a training image and its copy in train or test).
pub static DUPLICATES: Group = Group {
    stage: "scores",
    columns: &[
        Column { name: "id_a", description: "training image" },
        Column { name: "id_b", description: "its duplicate" },
        Column { name: "split_a", description: "split of id_a (train)" },
        Column { name: "split_b", description: "split of id_b" },
        Column {
            name: "embedding_distance",
            description: "distance between the unit embeddings (null without embeddings)",
        },
        Column {
            name: "pixel_distance",
            description: "mean absolute pixel difference as stored (no alignment), grey levels",
        },
        Column {
            name: "kind",
            description:
                "how the copy differs: exact, flipped, cropped, shifted or near (same geometry, other pixel values)",
        },
        Column { name: "same_label", description: "whether both carry the same label" },
    ],
};

/// `duplicates.parquet`: the pair's alignment-tolerant similarity (a group
/// of its own: runs written before it stay readable).
pub static DUPLICATE_SIMILARITY: Group = Group {
    stage: "scores",
    columns: &[
        Column {
            name: "similarity",
            description: "best normalised cross-correlation of the two images at 32x32 over mirroring, zooms 1-1.33 and shifts, grey or colour whichever is lower (-1 to 1)",
        },
        Column {
            name: "detail",
            description: "normalised cross-correlation of the two images' fine detail (the image less its blur) at that alignment",
        },
    ],
};

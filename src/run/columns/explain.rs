//! The column groups the explain stage (`src/stages/explain.rs`) owns and fills.

use crate::run::schema::{Column, Group};

/// `saliency.parquet`: one row per image x method x target class.
pub static SALIENCY: Group = Group {
    stage: "explain",
    columns: &[
        Column { name: "id", description: "image id" },
        Column { name: "split", description: "train or test" },
        Column { name: "label", description: "given label (class index)" },
        Column { name: "label_name", description: "given label's name" },
        Column { name: "pred", description: "the model's prediction (class index)" },
        Column { name: "pred_name", description: "its name" },
        Column {
            name: "role",
            description: "why the image was explained: confused (a misclassified test image of an explained pair), contrast (a correctly classified test image of the pair's given class) or flagged (a suspicious training image)",
        },
        Column { name: "pair", description: "'A -> B' of a confused or contrast image (null for flagged images)" },
        Column { name: "method", description: "gradient, smoothgrad, integrated-gradients or grad-cam" },
        Column { name: "target", description: "the class whose logit the map explains (class index)" },
        Column { name: "target_name", description: "its name" },
        Column { name: "target_is", description: "pred, label or both: which of the image's classes the target is" },
        Column { name: "target_prob", description: "the target's softmax probability on the clean image" },
        Column {
            name: "ring_share",
            description: "share of the map's relevance in the image's outer ring (pixels within side/8 of the border, at least 1; 43.75% of the area)",
        },
        Column {
            name: "ring_ratio",
            description: "mean relevance per ring pixel over mean per centre pixel: background reliance (1 = none preferred)",
        },
        Column { name: "concentration", description: "share of the relevance in the 10% most relevant pixels (0.1 = uniform)" },
        Column { name: "ring_red", description: "mean red of the image's ring, [0, 1]" },
        Column { name: "ring_green", description: "mean green of the ring, [0, 1]" },
        Column { name: "ring_blue", description: "mean blue of the ring, [0, 1]" },
        Column {
            name: "deletion_auc",
            description: "area under the target's probability as pixels are replaced by the fill, most relevant first (lower = the map found what matters)",
        },
        Column { name: "insertion_auc", description: "area under it as pixels are put back into the fill, most relevant first (higher = better)" },
        Column { name: "deletion_auc_random", description: "the same deletion area for a seeded random pixel order of this image" },
        Column { name: "insertion_auc_random", description: "the same insertion area for that random order" },
        Column {
            name: "completeness_gap",
            description: "integrated-gradients only: |sum of attributions - (f(x) - f(baseline))| / |f(x) - f(baseline)| for the target's logit",
        },
        Column { name: "file", description: "the panel PNG (image, then one map per method), relative to the run folder" },
        Column { name: "sheet", description: "the pair's contact sheet PNG (confused images, then contrast images)" },
    ],
};

/// `sanity.parquet`: the cascading randomisation curve.
pub static SANITY: Group = Group {
    stage: "explain",
    columns: &[
        Column { name: "method", description: "the attribution method" },
        Column { name: "step", description: "0 = the trained model; n = the first n layer groups from the logits down re-initialised" },
        Column { name: "randomized_down_to", description: "the lowest layer group re-initialised at this step (trained at step 0)" },
        Column {
            name: "spearman",
            description: "mean Spearman rank correlation of the absolute maps with the trained model's (same images, same targets)",
        },
        Column { name: "spearman_sd", description: "its standard deviation over the images" },
        Column { name: "ssim", description: "mean SSIM of the maps (each scaled to [0, 1]) with the trained model's" },
        Column { name: "images", description: "images compared" },
        Column {
            name: "trustworthy",
            description: "whether the method passed: with every layer random, its mean Spearman is below 0.5 (the same on every row of the method)",
        },
    ],
};

/// `pair_radii.parquet`: targeted and untargeted L2 radii of an explained pair's images.
pub static PAIR_RADII: Group = Group {
    stage: "explain",
    columns: &[
        Column { name: "id", description: "image id (a correctly classified test image of A)" },
        Column { name: "given", description: "class A (its label)" },
        Column { name: "given_name", description: "A's name" },
        Column { name: "target", description: "class B, the target of the targeted attack" },
        Column { name: "target_name", description: "B's name" },
        Column { name: "pair", description: "'A -> B'" },
        Column {
            name: "radius_targeted_l2",
            description: "smallest L2 budget of targeted PGD that reached B, [0, 1] pixel units (null: not within the largest budget)",
        },
        Column {
            name: "radius_untargeted_l2",
            description: "smallest L2 budget of untargeted PGD that left A (null: not within the largest budget)",
        },
    ],
};

/// `samples.parquet`: the ring colour of every image and the occlusion check's predictions.
pub static SAMPLE_EXPLAIN: Group = Group {
    stage: "explain",
    columns: &[
        Column { name: "ring_red", description: "mean red of the image's outer ring, [0, 1]" },
        Column { name: "ring_green", description: "mean green of the ring, [0, 1]" },
        Column { name: "ring_blue", description: "mean blue of the ring, [0, 1]" },
        Column {
            name: "pred_background_only",
            description: "test images: the prediction with the centre filled with the image's mean colour (null for training images)",
        },
        Column { name: "pred_object_only", description: "test images: the prediction with the ring filled with the image's mean colour" },
    ],
};

/// `classes.parquet`: the occlusion check per class (test split).
pub static CLASS_OCCLUSION: Group = Group {
    stage: "explain",
    columns: &[
        Column {
            name: "background_only_accuracy",
            description: "share of the class's test images still predicted as it with the centre filled",
        },
        Column { name: "background_only_accuracy_low", description: "95% Wilson interval, low end" },
        Column { name: "background_only_accuracy_high", description: "95% Wilson interval, high end" },
        Column { name: "object_only_accuracy", description: "the same with the ring filled" },
        Column { name: "object_only_accuracy_low", description: "95% Wilson interval, low end" },
        Column { name: "object_only_accuracy_high", description: "95% Wilson interval, high end" },
    ],
};

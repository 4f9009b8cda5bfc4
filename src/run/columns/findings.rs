//! The column groups the findings (`src/findings/`) own and fill.

use crate::run::schema::{Column, Group, Named};

/// `findings.parquet`'s own columns; after them come the evidence columns,
/// the union of the columns the rules' queries return (null where a
/// finding's rule returned no such column).
pub static FINDINGS: Group = Group {
    stage: "findings",
    columns: &[
        Column { name: "rule", description: "the rule's id" },
        Column { name: "title", description: "the rule's title" },
        Column { name: "severity", description: "info, warn or error" },
        Column { name: "subject_kind", description: "image, class, pair or run" },
        Column { name: "subject", description: "the image id, class name, 'A -> B' pair or run name" },
        Column { name: "message", description: "the finding in words" },
        Column {
            name: "rule_matches",
            description: "rows the rule's query returned (findings kept: at most its limit)",
        },
        Column { name: "rule_row", description: "1-based row of this finding in the rule's result" },
    ],
};

/// `pairs.parquet`'s columns.
pub static PAIRS: Group = Group {
    stage: "findings",
    columns: &[
        Column { name: "given", description: "class A: the given label (class index)" },
        Column { name: "given_name", description: "class A's name" },
        Column { name: "other", description: "class B: predicted, flipped to or suggested (class index)" },
        Column { name: "other_name", description: "class B's name" },
        Column { name: "pair", description: "'A -> B' in class names" },
        Column { name: "rank", description: "1 = the pair with the most test confusions (then attack flips, relabels)" },
        Column { name: "test_confusions", description: "test images of A predicted as B (null: no test split)" },
        Column { name: "test_share", description: "test_confusions over A's test images" },
        Column { name: "miss_share", description: "test_confusions over A's test misses" },
        Column {
            name: "attack_flips",
            description: "correctly classified test images of A that an untargeted attack flipped to B, counted once per attack, at the smallest budget that flipped them (null: no attacks)",
        },
        Column { name: "flip_share", description: "attack_flips over all untargeted flips of A's images" },
        Column {
            name: "median_flip_budget_linf",
            description: "median smallest L-inf budget of those flips, [0, 1] pixel units",
        },
        Column { name: "median_flip_budget_l2", description: "the same for L2 attacks" },
        Column { name: "targeted_attacked", description: "images of A attacked with B as the target (all targeted attacks)" },
        Column { name: "targeted_successes", description: "of those, the attacks that reached B" },
        Column {
            name: "targeted_median_budget_linf",
            description: "median smallest L-inf budget that reached B (null when more than half did not, or none were run)",
        },
        Column { name: "targeted_median_budget_l2", description: "the same for targeted L2 attacks" },
        Column {
            name: "suggested_relabels",
            description: "training images of A flagged likely mislabeled whose suggested label is B (null where the training probabilities are in sample: an imported model's flags there are for review only)",
        },
        Column {
            name: "label_issues_to",
            description: "training images of A flagged by confident learning whose suggested label is B (null where the training probabilities are in sample)",
        },
        Column { name: "joint_count", description: "calibrated confident joint C[A][B]: training images of A confidently predicted B" },
        Column { name: "joint_share", description: "estimated joint p(given A, true B), share of all training images" },
        Column {
            name: "joint_asymmetry",
            description: "(p(A,B) - p(B,A)) / (p(A,B) + p(B,A)): 1 = only A's images look like B, -1 = only the reverse",
        },
        Column {
            name: "cross_duplicates",
            description: "duplicate pairs with one image labelled A and the other B (either order)",
        },
        Column {
            name: "neighbor_share",
            description: "share of A's training images whose nearest neighbours' weighted majority label is B",
        },
    ],
};

/// `pairs.parquet`: each untargeted attack's flips from A to B.
pub static PAIR_FLIPS: Named = Named {
    stage: "findings",
    prefix: "flips:",
    pattern: "flips:ATTACK",
    description:
        "correctly classified test images of A that the untargeted ATTACK flipped to B, within its largest budget",
};

/// `pairs.parquet`: the budgets of those flips.
pub static PAIR_FLIP_BUDGETS: Named = Named {
    stage: "findings",
    prefix: "flip_budget:",
    pattern: "flip_budget:ATTACK",
    description: "median smallest budget at which ATTACK flipped them, in its norm's [0, 1] pixel units",
};

/// `pairs.parquet`'s root-cause columns (runs whose explain stage ran).
pub static CAUSES: Group = Group {
    stage: "findings",
    columns: &[
        Column { name: "explained", description: "whether the explain stage explained this pair (its images have maps)" },
        Column { name: "explanation_method", description: "the method whose maps the cause columns use (the most trustworthy)" },
        Column {
            name: "confusions_pooled",
            description: "images of A predicted B: test images plus training images by their out-of-sample probabilities",
        },
        Column { name: "confusion_symmetry", description: "the smaller of confusions_pooled A->B and B->A over the larger (1 = both ways alike)" },
        Column {
            name: "confused_train",
            description: "training images of A predicted B (out of sample; where the training probabilities are in sample, an imported model's, these are not counted as a witness)",
        },
        Column { name: "confused_flagged_share", description: "share of those flagged likely mislabeled" },
        Column { name: "confused_flagged_share_low", description: "95% Wilson interval, low end" },
        Column { name: "confused_flagged_share_high", description: "95% Wilson interval, high end" },
        Column { name: "confused_neighbor_share", description: "share of those whose neighbours' majority label is B" },
        Column { name: "confused_neighbor_share_low", description: "95% Wilson interval, low end" },
        Column { name: "confused_neighbor_share_high", description: "95% Wilson interval, high end" },
        Column { name: "neighbor_rank", description: "1 = B is the class A's training neighbourhoods lean to most (by neighbor_share)" },
        Column {
            name: "targeted_radius_ratio",
            description: "median over A's attacked images of (smallest L2 budget reaching B) / (smallest budget leaving A); 1 = B is the nearest class",
        },
        Column { name: "ring_reliance_confused", description: "mean ring_ratio of the confused images' maps towards B" },
        Column { name: "ring_reliance_correct", description: "mean ring_ratio of correctly classified images of A (maps towards A)" },
        Column { name: "ring_reliance_gap", description: "ring_reliance_confused - ring_reliance_correct" },
        Column { name: "ring_reliance_gap_low", description: "2,000-resample seeded bootstrap 95% interval, low end" },
        Column { name: "ring_reliance_gap_high", description: "high end" },
        Column { name: "concentration_confused", description: "median concentration of the confused images' maps towards B" },
        Column { name: "concentration_correct", description: "median concentration of correctly classified images of A" },
        Column {
            name: "background_only_pair_rate",
            description: "share of A's test images predicted A or B with the centre filled (background only)",
        },
        Column { name: "background_only_other_rate", description: "share of other classes' test images predicted A or B so" },
        Column { name: "background_lift", description: "background_only_pair_rate - background_only_other_rate" },
        Column { name: "background_lift_low", description: "low end: the pair rate's Wilson low minus the other rate's Wilson high" },
        Column { name: "background_lift_high", description: "high end: the pair rate's Wilson high minus the other rate's Wilson low" },
        Column { name: "ring_colour_distance", description: "distance between A's and B's mean ring colours (test images), [0, 1] RGB" },
        Column {
            name: "ring_colour_auc",
            description: "AUROC of ring colour alone for A against B (test images, projected on the training means' difference)",
        },
        Column { name: "ring_colour_pair_auc", description: "the same for A or B against every other class" },
        Column {
            name: "support_label_noise",
            description: "share of the label-noise criteria met (L1-L3) among those that count (met or not in 95% of resamples; null: none counts)",
        },
        Column { name: "support_look_alike", description: "the same for the look-alike criteria (K1-K5)" },
        Column { name: "support_background", description: "the same for the background-shortcut criteria (B1-B3)" },
        Column {
            name: "hypothesis",
            description: "label_noise, look_alike or background_shortcut where the evidence clears its uncertainty; undecided between the two leading ones otherwise; none when no hypothesis meets two thirds of its criteria (null: not explained)",
        },
        Column { name: "hypothesis_leading", description: "the hypothesis with the largest share of its criteria met" },
        Column { name: "hypothesis_runner_up", description: "the next one" },
        Column {
            name: "hypothesis_confidence",
            description: "share of 500 seeded bootstrap resamples of the pair's evidence in which the leading hypothesis had the largest share of its criteria met",
        },
        Column { name: "hypothesis_text", description: "the hypothesis in words, with the numbers it rests on" },
    ],
};

/// `correlations.parquet`'s columns.
pub static CORRELATIONS: Group = Group {
    stage: "findings",
    columns: &[
        Column { name: "scope", description: "classes (one value per class) or images (one value per image)" },
        Column {
            name: "x",
            description: "the measurement that predicts: a classes.parquet column, a rate, attack_success:ATTACK@BUDGET, or a samples.parquet score",
        },
        Column { name: "y", description: "the measurement predicted: miss_rate, attack_success:ATTACK@BUDGET, test_miss" },
        Column { name: "method", description: "spearman, pearson or auroc" },
        Column {
            name: "x_direction",
            description: "auroc: which end of x predicts y (low or high; the AUROC is of that end); null for correlations",
        },
        Column {
            name: "headline",
            description: "the figure to quote: Spearman's rho of the miss rate and each attack's success at its headline budget (the smallest that flips some but not all victims)",
        },
        Column { name: "n", description: "classes or images with both values" },
        Column { name: "estimate", description: "the correlation (-1 to 1) or AUROC (0 to 1; 0.5 = no better than chance)" },
        Column { name: "ci_low", description: "seeded percentile bootstrap 95% interval, low end" },
        Column { name: "ci_high", description: "seeded percentile bootstrap 95% interval, high end" },
        Column {
            name: "p_value",
            description: "seeded two-sided permutation p-value against no association, (1 + as extreme) / (1 + permutations)",
        },
        Column { name: "resamples", description: "bootstrap resamples on which the figure was defined" },
        Column { name: "permutations", description: "permutations drawn" },
        Column { name: "seed", description: "seed of the resampling (from the run's seed, x, y and method)" },
    ],
};

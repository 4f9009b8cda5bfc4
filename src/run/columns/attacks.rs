//! The column groups the attacks stage (`src/stages/attacks.rs`) owns and fills.

use crate::run::schema::{Column, Group, Named};

/// `samples.parquet`: whether each image was attacked, and its robustness radius.
pub static SAMPLE_ATTACKS: Group = Group {
    stage: "attacks",
    columns: &[
        Column { name: "attacked", description: "whether the attack stage attacked this image" },
        Column {
            name: "radius_linf",
            description: "smallest L-inf budget (bisection over PGD) that flips the image, [0, 1] pixel units; null: not attacked or not flipped within the largest budget",
        },
        Column { name: "radius_l2", description: "the same in L2" },
    ],
};

/// `classes.parquet`: the median radius of each class's attacked test images.
pub static CLASS_RADIUS: Group = Group {
    stage: "attacks",
    columns: &[
        Column {
            name: "median_radius_linf",
            description: "median smallest L-inf budget flipping the class's attacked test images (null: above the largest budget)",
        },
        Column { name: "median_radius_l2", description: "the same in L2, [0, 1] pixel units" },
    ],
};

/// `classes.parquet`: success per attack and budget, one column each
/// (with its interval), named by the run's attacks and budgets.
pub static CLASS_SUCCESS: Named = Named {
    stage: "attacks",
    prefix: "success:",
    pattern: "success:ATTACK@BUDGET",
    description: "share of the class's attacked test images flipped by ATTACK within BUDGET (ATTACK@BUDGET:low and :high, its 95% Wilson interval; null: none attacked)",
};

/// `attacks.parquet`: one row per attacked image x attack x budget.
pub static ATTACKS: Group = Group {
    stage: "attacks",
    columns: &[
        Column { name: "id", description: "attacked image" },
        Column { name: "split", description: "train or test" },
        Column { name: "label", description: "given label" },
        Column { name: "label_name", description: "given label's name" },
        Column { name: "attack", description: "METHOD:NORM[:TARGET], e.g. pgd:linf:least-likely" },
        Column { name: "method", description: "fgsm or pgd" },
        Column { name: "norm", description: "linf or l2" },
        Column { name: "targeted", description: "whether success means reaching a target class" },
        Column { name: "target", description: "target class (null: untargeted)" },
        Column { name: "target_name", description: "target class name" },
        Column { name: "budget", description: "budget in the attack's norm, [0, 1] pixel units (8/255 = 0.0314)" },
        Column {
            name: "success",
            description: "untargeted: prediction left the label; targeted: prediction is the target",
        },
        Column { name: "adv_pred", description: "prediction on the adversarial image" },
        Column { name: "adv_pred_name", description: "its class name" },
        Column { name: "adv_prob", description: "softmax probability of adv_pred" },
        Column { name: "linf", description: "L-inf norm of the perturbation used, [0, 1] pixel units" },
        Column { name: "l2", description: "L2 norm of the perturbation used, [0, 1] pixel units" },
        Column {
            name: "steps",
            description: "gradient steps taken before success (all, over every restart, on failure)",
        },
    ],
};

/// `attack_classes.parquet`: one row per class x attack x budget, success among the class's test victims.
pub static ATTACK_CLASSES: Group = Group {
    stage: "attacks",
    columns: &[
        Column { name: "class", description: "class index" },
        Column { name: "class_name", description: "class name" },
        Column { name: "attack", description: "METHOD:NORM[:TARGET]" },
        Column { name: "budget", description: "budget in the attack's norm, [0, 1] pixel units" },
        Column { name: "attacked", description: "test images of the class attacked" },
        Column { name: "successes", description: "of those, flipped" },
        Column { name: "success_rate", description: "successes over attacked (null: none attacked)" },
        Column { name: "success_rate_low", description: "95% Wilson interval, low end (null: none attacked)" },
        Column { name: "success_rate_high", description: "95% Wilson interval, high end (null: none attacked)" },
    ],
};

/// A budget as the names of [`CLASS_SUCCESS`] columns (and the `correlations`
/// table's measures) write it: `2/255` for an L-inf budget that is a whole
/// number of grey levels, the plain number otherwise.
pub fn budget_label(attack: &str, budget: f32) -> String {
    let levels = budget * 255.0;
    if attack.contains(":linf") && (levels - levels.round()).abs() < 1e-3 {
        format!("{}/255", levels.round())
    } else {
        format!("{budget}")
    }
}

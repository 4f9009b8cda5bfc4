//! The run folder's contract: every table a run can hold, and every column
//! of it, in one place. The column groups live in [`super::columns`], one
//! file per stage that owns and fills them; this list says which groups, in
//! which order, make each table. It depends on no stage. The writer builds columns
//! against it ([`crate::run::table::TableBuilder`]), the read side checks tables
//! against it ([`crate::run::read`]), and a test checks the table
//! of tables and columns in docs/run-folder.md against it.

use super::columns::{attacks, data, evaluate, explain, findings, gallery, influence, model, scores, selfcheck};

/// One column: its name and what it holds, in which units (stored as the
/// Parquet field's `description`).
#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub description: &'static str,
}

/// The columns one stage adds to a table: all of them or none (a run
/// without that stage, or where it does not apply, leaves the group out).
#[derive(Debug)]
pub struct Group {
    /// The stage that owns and fills the group (`data`, `model`, ...).
    pub stage: &'static str,
    pub columns: &'static [Column],
}

impl Group {
    /// The column names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        self.columns.iter().map(|c| c.name)
    }
}

/// Columns a stage names at run time, one per member of something the run
/// configures (an attack at a budget), all with one name pattern: a fixed
/// prefix, then the member.
#[derive(Debug)]
pub struct Named {
    /// The stage that owns and fills them.
    pub stage: &'static str,
    /// Every such column's name starts with this (`success:`).
    pub prefix: &'static str,
    /// The name pattern, as docs/run-folder.md shows it (`success:ATTACK@BUDGET`).
    pub pattern: &'static str,
    /// What each holds, in which units.
    pub description: &'static str,
}

/// One table of a run folder.
#[derive(Debug)]
pub struct TableSchema {
    /// The name the read side registers it under (`samples`).
    pub name: &'static str,
    /// Its file in the run folder (`samples.parquet`).
    pub file: &'static str,
    /// What one row is.
    pub row: &'static str,
    /// Its column groups, in column order; the first holds the key columns
    /// every run that writes the table has.
    pub groups: &'static [&'static Group],
    /// Columns named at run time, after the groups' (none for most tables).
    pub named: &'static [&'static Named],
}

impl TableSchema {
    /// Every column name, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.groups.iter().flat_map(|g| g.names())
    }

    /// What column `name` holds: its group column's description, or its
    /// run-time-named columns' (None: not in the contract).
    pub fn describe(&self, name: &str) -> Option<&'static str> {
        let fixed = self.groups.iter().flat_map(|g| g.columns.iter()).find(|c| c.name == name);
        fixed
            .map(|c| c.description)
            .or_else(|| self.named.iter().find(|n| name.starts_with(n.prefix)).map(|n| n.description))
    }
}

pub static SAMPLES: TableSchema = TableSchema {
    name: "samples",
    file: "samples.parquet",
    row: "one image",
    groups: &[
        &data::SAMPLE_KEYS,
        &model::SAMPLE_MODEL,
        &scores::SAMPLE_SCORES,
        &scores::SAMPLE_LABEL_ERROR,
        &model::SAMPLE_AUM_FLAG,
        &attacks::SAMPLE_ATTACKS,
        &explain::SAMPLE_EXPLAIN,
        &influence::SAMPLE_INFLUENCE,
    ],
    named: &[],
};

pub static CLASSES: TableSchema = TableSchema {
    name: "classes",
    file: "classes.parquet",
    row: "one class",
    groups: &[
        &data::CLASS_COUNTS,
        &evaluate::CLASS_MISSES,
        &evaluate::CLASS_CONFUSED,
        &model::CLASS_CONFIDENCE,
        &attacks::CLASS_RADIUS,
        &scores::CLASS_FLAGS,
        &scores::CLASS_FLAGS_TEST,
        &scores::CLASS_NOISE_INTERVAL,
        &explain::CLASS_OCCLUSION,
    ],
    named: &[&attacks::CLASS_SUCCESS],
};

pub static CONFUSION: TableSchema = TableSchema {
    name: "confusion",
    file: "confusion.parquet",
    row: "one (given, predicted) class pair of the test split",
    groups: &[&evaluate::CONFUSION],
    named: &[],
};

pub static DYNAMICS: TableSchema = TableSchema {
    name: "dynamics",
    file: "dynamics.parquet",
    row: "one training image at one epoch",
    groups: &[&model::DYNAMICS],
    named: &[],
};

pub static EMBEDDINGS: TableSchema = TableSchema {
    name: "embeddings",
    file: "embeddings.parquet",
    row: "one image",
    groups: &[&scores::EMBEDDINGS],
    named: &[],
};

pub static NEIGHBORS: TableSchema = TableSchema {
    name: "neighbors",
    file: "neighbors.parquet",
    row: "one (image, neighbour rank) pair",
    groups: &[&scores::NEIGHBORS],
    named: &[],
};

pub static DUPLICATES: TableSchema = TableSchema {
    name: "duplicates",
    file: "duplicates.parquet",
    row: "one duplicate pair",
    groups: &[&scores::DUPLICATES, &scores::DUPLICATE_SIMILARITY],
    named: &[],
};

pub static ATTACKS: TableSchema = TableSchema {
    name: "attacks",
    file: "attacks.parquet",
    row: "one attacked image under one attack at one budget",
    groups: &[&attacks::ATTACKS],
    named: &[],
};

pub static ATTACK_CLASSES: TableSchema = TableSchema {
    name: "attack_classes",
    file: "attack_classes.parquet",
    row: "one class under one attack at one budget (test victims)",
    groups: &[&attacks::ATTACK_CLASSES],
    named: &[],
};

pub static SELFCHECK: TableSchema = TableSchema {
    name: "selfcheck",
    file: "selfcheck.parquet",
    row: "one flag or score checked against planted or injected problems",
    groups: &[&selfcheck::SELFCHECK],
    named: &[],
};

pub static PLANTED: TableSchema = TableSchema {
    name: "planted",
    file: "planted.parquet",
    row: "one planted problem",
    groups: &[&data::PLANTED],
    named: &[],
};

pub static GALLERY: TableSchema = TableSchema {
    name: "gallery",
    file: "gallery.parquet",
    row: "one image with a PNG in gallery/",
    groups: &[&gallery::GALLERY],
    named: &[],
};

pub static SALIENCY: TableSchema = TableSchema {
    name: "saliency",
    file: "saliency.parquet",
    row: "one explained image under one attribution method for one target class",
    groups: &[&explain::SALIENCY],
    named: &[],
};

pub static SANITY: TableSchema = TableSchema {
    name: "sanity",
    file: "sanity.parquet",
    row: "one attribution method at one step of the cascading model randomisation",
    groups: &[&explain::SANITY],
    named: &[],
};

pub static PAIR_RADII: TableSchema = TableSchema {
    name: "pair_radii",
    file: "pair_radii.parquet",
    row: "one correctly classified test image of A attacked towards B, for an explained pair A -> B",
    groups: &[&explain::PAIR_RADII],
    named: &[],
};

pub static INFLUENCE: TableSchema = TableSchema {
    name: "influence",
    file: "influence.parquet",
    row: "one training image among the top proponents or opponents of one misclassified test image",
    groups: &[&influence::INFLUENCE],
    named: &[],
};

pub static PAIRS: TableSchema = TableSchema {
    name: "pairs",
    file: "pairs.parquet",
    row: "one ordered class pair (given A, other B) with any evidence",
    groups: &[&findings::PAIRS, &findings::CAUSES],
    named: &[&findings::PAIR_FLIPS, &findings::PAIR_FLIP_BUDGETS],
};

pub static CORRELATIONS: TableSchema = TableSchema {
    name: "correlations",
    file: "correlations.parquet",
    row: "one measurement against another, across classes or images",
    groups: &[&findings::CORRELATIONS],
    named: &[],
};

pub static FINDINGS: TableSchema = TableSchema {
    name: "findings",
    file: "findings.parquet",
    row: "one finding of one rule",
    groups: &[&findings::FINDINGS],
    named: &[],
};

/// Every table a run folder can hold.
pub static TABLES: &[&TableSchema] = &[
    &SAMPLES,
    &CLASSES,
    &CONFUSION,
    &DYNAMICS,
    &EMBEDDINGS,
    &NEIGHBORS,
    &DUPLICATES,
    &ATTACKS,
    &ATTACK_CLASSES,
    &SELFCHECK,
    &PLANTED,
    &GALLERY,
    &SALIENCY,
    &SANITY,
    &PAIR_RADII,
    &INFLUENCE,
    &PAIRS,
    &CORRELATIONS,
    &FINDINGS,
];

/// The table named `name` (`samples` or `samples.parquet`).
pub fn table(name: &str) -> Option<&'static TableSchema> {
    TABLES.iter().copied().find(|t| t.name == name || t.file == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_within_each_table_and_across_tables() {
        let mut files = std::collections::HashSet::new();
        for t in TABLES {
            assert!(files.insert(t.file), "{} twice", t.file);
            assert_eq!(format!("{}.parquet", t.name), t.file);
            let mut names = std::collections::HashSet::new();
            for n in t.names() {
                assert!(names.insert(n), "{}: column {n} twice", t.file);
            }
            for g in t.groups {
                assert!(!g.columns.is_empty(), "{}: empty {} group", t.file, g.stage);
                for c in g.columns {
                    assert!(!c.description.is_empty(), "{}.{}: no description", t.file, c.name);
                }
            }
        }
    }
}

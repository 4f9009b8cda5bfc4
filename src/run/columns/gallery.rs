//! The column groups the gallery stage (`src/stages/gallery.rs`) owns and fills.

use crate::run::schema::{Column, Group};

/// `gallery.parquet`: one row per image in the gallery.
pub static GALLERY: Group = Group {
    stage: "gallery",
    columns: &[
        Column { name: "id", description: "image id" },
        Column { name: "file", description: "its PNG, relative to the run folder (original size)" },
        Column {
            name: "reason",
            description: "why it is there: flagged, neighbor, duplicate, missed (a misclassified test image) or influence (a training image behind several test mistakes, or one of its strip: the mistake and its strongest proponents)",
        },
    ],
};

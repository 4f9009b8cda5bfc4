//! Every column group of the run-folder contract, one file per stage that
//! owns and fills it (and one for the findings). The contract
//! ([`super::schema`]) lists which groups make each table; the stages and the
//! findings import their groups from here, so that the contract depends on
//! no stage.

pub mod attacks;
pub mod data;
pub mod evaluate;
pub mod explain;
pub mod findings;
pub mod gallery;
pub mod influence;
pub mod model;
pub mod scores;
pub mod selfcheck;

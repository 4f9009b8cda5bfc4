//! The attacks stage: FGSM and PGD against the final model, per-class
//! attack success and robustness radii ([`crate::attack`]); the tables it
//! owns: `attacks.parquet`, `attack_classes.parquet`, the adversarial
//! examples, `samples.parquet`'s attack columns, `classes.parquet`'s median
//! radii, and `run.json`'s `attacks`.

use super::Samples;
use crate::attack::{self, AttackConfig, AttackResults, AttackRow, AttackSummary, ClassSuccess, Method};
use crate::data::Dataset;
use crate::error::Result;
use crate::model::ResNet;
use crate::run::columns::attacks::budget_label;
use crate::run::columns::attacks::{ATTACKS, ATTACK_CLASSES, CLASS_RADIUS, CLASS_SUCCESS, SAMPLE_ATTACKS};
use crate::run::schema;
use crate::run::table::{Columns, TableBuilder};
use crate::run::RunWriter;
use arrow::array::RecordBatch;

/// The run folder's folder of adversarial example PNGs.
pub const EXAMPLES_DIR: &str = "attack_examples";

/// What the attacks stage produced.
pub struct AttackStage {
    pub results: AttackResults,
    /// The configuration the attacks ran with (the run's seed in it).
    pub config: AttackConfig,
    pub summary: AttackSummary,
}

/// Attacks the victims chosen from the model's logits.
pub fn run(
    model: &ResNet,
    ds: &Dataset,
    train_logits: &[f32],
    test_logits: &[f32],
    config: &AttackConfig,
    progress: bool,
) -> Result<AttackStage> {
    let victims = attack::victims(ds, test_logits, train_logits, config);
    let results = attack::run(model, ds, victims, config, progress)?;
    let summary = AttackSummary::new(&results, config, ds.classes.len());
    Ok(AttackStage { results, config: config.clone(), summary })
}

impl AttackStage {
    /// `samples.parquet`'s attack columns.
    pub fn sample_columns(&self, s: &Samples) -> Columns {
        let n = s.len();
        let (mut was, mut linf, mut l2) = (vec![false; n], vec![None; n], vec![None; n]);
        for (i, v) in self.results.victims.iter().enumerate() {
            let row = s.row(v.split, v.row);
            was[row] = true;
            linf[row] = self.results.radius_linf[i];
            l2[row] = self.results.radius_l2[i];
        }
        TableBuilder::new(&SAMPLE_ATTACKS)
            .bool("attacked", was)
            .opt_f32("radius_linf", linf)
            .opt_f32("radius_l2", l2)
            .finish()
    }

    /// `classes.parquet`'s median radii, then its success rate (with its
    /// 95% Wilson interval) under each attack at each budget.
    pub fn class_columns(&self, k: usize) -> Vec<Columns> {
        let radius = TableBuilder::new(&CLASS_RADIUS)
            .opt_f32("median_radius_linf", self.summary.median_radius_linf.iter().copied())
            .opt_f32("median_radius_l2", self.summary.median_radius_l2.iter().copied())
            .finish();
        let mut columns: Vec<(String, Vec<Option<f64>>)> = Vec::new();
        for c in &self.summary.per_class {
            let name = format!("{}{}@{}", CLASS_SUCCESS.prefix, c.attack, budget_label(&c.attack, c.budget));
            let at = match columns.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    for suffix in ["", ":low", ":high"] {
                        columns.push((format!("{name}{suffix}"), vec![None; k]));
                    }
                    columns.len() - 3
                }
            };
            let class = c.class as usize;
            if c.attacked > 0 {
                columns[at].1[class] = Some(c.rate);
                columns[at + 1].1[class] = Some(c.low);
                columns[at + 2].1[class] = Some(c.high);
            }
        }
        vec![radius, Columns::named_f64(&CLASS_SUCCESS, columns)]
    }

    /// `attacks.parquet`.
    pub fn attacks_table(&self, s: &Samples) -> RecordBatch {
        let (res, cfg) = (&self.results, &self.config);
        let v = |r: &AttackRow| &res.victims[r.victim];
        let spec = |r: &AttackRow| &cfg.attacks[r.attack];
        let rows = &res.rows;
        let name = |c: u32| s.classes[c as usize].as_str();
        TableBuilder::new(&ATTACKS)
            .utf8("id", rows.iter().map(|r| s.ids(v(r).split)[v(r).row].as_str()))
            .utf8("split", rows.iter().map(|r| v(r).split.as_str()))
            .i32("label", rows.iter().map(|r| v(r).label as i32))
            .utf8("label_name", rows.iter().map(|r| name(v(r).label)))
            .utf8("attack", rows.iter().map(|r| spec(r).name()))
            .utf8("method", rows.iter().map(|r| if spec(r).method == Method::Fgsm { "fgsm" } else { "pgd" }))
            .utf8("norm", rows.iter().map(|r| spec(r).norm.as_str()))
            .bool("targeted", rows.iter().map(|r| r.target.is_some()))
            .opt_i32("target", rows.iter().map(|r| r.target.map(|t| t as i32)))
            .opt_utf8("target_name", rows.iter().map(|r| r.target.map(name)))
            .f32("budget", rows.iter().map(|r| r.budget))
            .bool("success", rows.iter().map(|r| r.success))
            .i32("adv_pred", rows.iter().map(|r| r.adv_pred as i32))
            .utf8("adv_pred_name", rows.iter().map(|r| name(r.adv_pred)))
            .f32("adv_prob", rows.iter().map(|r| r.adv_prob))
            .f32("linf", rows.iter().map(|r| r.linf))
            .f32("l2", rows.iter().map(|r| r.l2))
            .i32("steps", rows.iter().map(|r| r.steps as i32))
            .finish_table(&schema::ATTACKS)
    }

    /// `attack_classes.parquet`.
    pub fn classes_table(&self, classes: &[String]) -> RecordBatch {
        let per_class: &[ClassSuccess] = &self.summary.per_class;
        TableBuilder::new(&ATTACK_CLASSES)
            .i32("class", per_class.iter().map(|c| c.class as i32))
            .utf8("class_name", per_class.iter().map(|c| classes[c.class as usize].as_str()))
            .utf8("attack", per_class.iter().map(|c| c.attack.as_str()))
            .f32("budget", per_class.iter().map(|c| c.budget))
            .i64("attacked", per_class.iter().map(|c| c.attacked as i64))
            .i64("successes", per_class.iter().map(|c| c.successes as i64))
            .opt_f64("success_rate", per_class.iter().map(|c| (c.attacked > 0).then_some(c.rate)))
            .opt_f64("success_rate_low", per_class.iter().map(|c| (c.attacked > 0).then_some(c.low)))
            .opt_f64("success_rate_high", per_class.iter().map(|c| (c.attacked > 0).then_some(c.high)))
            .finish_table(&schema::ATTACK_CLASSES)
    }

    /// Writes the adversarial examples as PNGs into the run's
    /// [`EXAMPLES_DIR`] and records their paths, relative to the run folder,
    /// in the summary.
    pub fn write_examples(&mut self, ds: &Dataset, writer: &RunWriter) -> Result<()> {
        let dir = writer.path(EXAMPLES_DIR);
        self.summary.examples = attack::write_examples(ds, &self.results, &self.config, &dir)?
            .into_iter()
            .map(|n| format!("{EXAMPLES_DIR}/{n}"))
            .collect();
        Ok(())
    }
}

/// The attacks stage: `None` when the run skips it (`--no-attacks`).
pub struct Attack<'c>(pub Option<&'c AttackConfig>);

impl super::Stage for Attack<'_> {
    fn name(&self) -> &'static str {
        "attacks"
    }

    fn line(&self, _run: &super::RunState) -> Option<&'static str> {
        self.0.map(|_| "attacks")
    }

    fn run(&self, run: &super::RunState, writer: &RunWriter) -> Result<Option<Box<dyn super::Made>>> {
        let Some(config) = self.0 else { return Ok(None) };
        let Some(ds) = run.dataset else { return Ok(None) };
        let m = run.get::<super::model::ModelStage>().expect("the model stage runs before the attacks");
        let mut stage = self::run(&m.model, ds, &m.train_logits, &m.model_test_logits, config, run.progress)?;
        stage.write_examples(ds, writer)?;
        Ok(Some(Box::new(stage)))
    }
}

impl super::Made for AttackStage {
    fn sample_columns(&self, run: &super::RunState) -> Vec<Columns> {
        vec![AttackStage::sample_columns(self, &run.samples)]
    }

    fn class_columns(&self, run: &super::RunState) -> Vec<Columns> {
        AttackStage::class_columns(self, run.samples.classes.len())
    }

    fn write(&self, run: &super::RunState, writer: &mut RunWriter) -> Result<()> {
        writer.write(&schema::ATTACKS, &self.attacks_table(&run.samples))?;
        writer.write(&schema::ATTACK_CLASSES, &self.classes_table(run.samples.classes))
    }

    fn section(&self, manifest: &mut crate::run::RunManifest) {
        manifest.set(&self.summary);
    }
}

//! Adversarial attacks and per-class robustness: which images an attacker
//! flips, within which budget, and how that varies by class.
//!
//! - [`pgd`]: one attack on one batch (FGSM, PGD; L-inf, L2; untargeted or targeted).
//! - [`radius`]: the smallest budget that flips each image (bisection over PGD).
//! - this module: which images are attacked, every attack at every budget,
//!   and the per-class summaries.
//!
//! Budgets are in [0, 1] pixel units (8/255 is eight grey levels), applied
//! before the model's normalisation. Budgets run in ascending order: an image
//! flipped within a smaller budget is flipped within every larger one, so its
//! adversarial image is carried forward instead of attacking it again (which
//! also makes the success rate non-decreasing in the budget).

pub mod pgd;
pub mod radius;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::model::{self, ResNet};
use crate::stats::{argmax, argmin, median, wilson, Z95};
pub use pgd::{Outcome, Steps};

/// The norm a budget is measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    Linf,
    L2,
}

impl Norm {
    pub fn as_str(self) -> &'static str {
        match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        }
    }
}

/// FGSM (one step of the whole budget) or PGD (random start, iterated).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Fgsm,
    Pgd,
}

/// What counts as success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The prediction leaves the label.
    Untargeted,
    /// The prediction becomes the image's least-likely class on the clean
    /// image (Kurakin et al. 2017, iterative least-likely class method).
    LeastLikely,
    /// The prediction becomes this class (images of that class are not attacked).
    Class(String),
}

/// One attack: method, norm and target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttackSpec {
    pub method: Method,
    pub norm: Norm,
    pub target: Target,
}

impl AttackSpec {
    /// Parses `METHOD:NORM[:TARGET]`: `pgd:linf`, `fgsm:l2`,
    /// `pgd:linf:least-likely`, `pgd:l2:cat` (a class name).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Usage(format!("--attacks '{s}': {why} (expected METHOD:NORM[:TARGET], e.g. pgd:linf:least-likely)"))
        };
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad("wrong number of parts"));
        }
        let method = match parts[0] {
            "fgsm" => Method::Fgsm,
            "pgd" | "bim" => Method::Pgd,
            _ => return Err(bad("method must be fgsm or pgd")),
        };
        let norm = match parts[1] {
            "linf" => Norm::Linf,
            "l2" => Norm::L2,
            _ => return Err(bad("norm must be linf or l2")),
        };
        let target = match parts.get(2).copied() {
            None | Some("untargeted") => Target::Untargeted,
            Some("least-likely") | Some("ll") => Target::LeastLikely,
            Some(c) if !c.is_empty() => Target::Class(c.to_string()),
            _ => return Err(bad("empty target")),
        };
        Ok(AttackSpec { method, norm, target })
    }

    /// `pgd:linf:least-likely` style name.
    pub fn name(&self) -> String {
        let m = match self.method {
            Method::Fgsm => "fgsm",
            Method::Pgd => "pgd",
        };
        match &self.target {
            Target::Untargeted => format!("{m}:{}", self.norm.as_str()),
            Target::LeastLikely => format!("{m}:{}:least-likely", self.norm.as_str()),
            Target::Class(c) => format!("{m}:{}:{c}", self.norm.as_str()),
        }
    }

    /// The untargeted PGD attack whose budget sweep brackets the radius.
    fn is_radius_source(&self, norm: Norm) -> bool {
        self.method == Method::Pgd && self.norm == norm && self.target == Target::Untargeted
    }
}

/// Everything the attack stage is asked to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackConfig {
    pub attacks: Vec<AttackSpec>,
    /// L-inf budgets in [0, 1] pixel units, e.g. 1/255.
    pub eps_linf: Vec<f32>,
    /// L2 budgets in [0, 1] pixel units (norm over all 3 x h x w values).
    pub eps_l2: Vec<f32>,
    /// PGD steps per restart.
    pub steps: usize,
    /// PGD step size as a multiple of the budget (default 2.5 / steps).
    pub step_ratio: Option<f32>,
    /// PGD random restarts.
    pub restarts: usize,
    /// Bisect the smallest flipping budget (per image, in both norms).
    pub radius: bool,
    /// Bisection stops when the bracket is this narrow, as a share of the
    /// smallest budget of the norm.
    pub radius_tolerance: f32,
    /// Attack at most this many images per class (seeded sample); None: all.
    pub per_class: Option<usize>,
    /// Also attack test images the model gets wrong (they count as flipped at budget 0).
    pub include_misclassified: bool,
    /// Also attack this many training images per class.
    pub train_per_class: usize,
    /// Images per batch.
    pub batch: usize,
    /// Adversarial examples saved as PNG, per class.
    pub png_per_class: usize,
    pub seed: u64,
}

impl Default for AttackConfig {
    fn default() -> Self {
        let spec = |m, n, t| AttackSpec { method: m, norm: n, target: t };
        AttackConfig {
            attacks: vec![
                spec(Method::Fgsm, Norm::Linf, Target::Untargeted),
                spec(Method::Pgd, Norm::Linf, Target::Untargeted),
                spec(Method::Pgd, Norm::Linf, Target::LeastLikely),
                spec(Method::Pgd, Norm::L2, Target::Untargeted),
            ],
            eps_linf: vec![1.0 / 255.0, 2.0 / 255.0, 4.0 / 255.0, 8.0 / 255.0],
            eps_l2: vec![0.125, 0.25, 0.5, 1.0],
            steps: 10,
            step_ratio: None,
            restarts: 1,
            radius: true,
            radius_tolerance: 0.25,
            per_class: Some(100),
            include_misclassified: false,
            train_per_class: 0,
            batch: 256,
            png_per_class: 2,
            seed: 0,
        }
    }
}

impl AttackConfig {
    /// Budgets of a norm, ascending.
    pub fn budgets(&self, norm: Norm) -> Vec<f32> {
        let mut b = match norm {
            Norm::Linf => self.eps_linf.clone(),
            Norm::L2 => self.eps_l2.clone(),
        };
        b.sort_by(f32::total_cmp);
        b.dedup();
        b
    }

    /// How `method` iterates under this configuration.
    pub fn steps_of(&self, method: Method) -> Steps {
        match method {
            Method::Fgsm => Steps { steps: 1, step_ratio: 1.0, restarts: 1, random_start: false },
            Method::Pgd => Steps {
                steps: self.steps.max(1),
                step_ratio: self.step_ratio.unwrap_or(2.5 / self.steps.max(1) as f32),
                restarts: self.restarts.max(1),
                random_start: true,
            },
        }
    }

    /// Checks budgets, targets and counts against the dataset's classes.
    pub fn validate(&self, classes: &[String]) -> Result<()> {
        self.validate_options()?;
        for a in &self.attacks {
            if let Target::Class(c) = &a.target {
                if !classes.contains(c) {
                    return Err(Error::Usage(format!(
                        "--attacks {}: no class '{c}' (classes: {})",
                        a.name(),
                        classes.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks what needs no dataset: budgets, counts, the step ratio.
    pub fn validate_options(&self) -> Result<()> {
        for (norm, b) in [(Norm::Linf, &self.eps_linf), (Norm::L2, &self.eps_l2)] {
            if let Some(e) = b.iter().find(|e| !e.is_finite() || **e < 0.0) {
                return Err(Error::Usage(format!(
                    "{} budget {e}: budgets must be finite and at least 0",
                    norm.as_str()
                )));
            }
            // Pixels live in [0, 1]: an L-inf budget above 1 allows any image at all.
            if let Some(e) = b.iter().find(|e| norm == Norm::Linf && **e > 1.0) {
                return Err(Error::Usage(format!("--eps {e}: L-inf budgets are in [0, 1] pixel units (8/255, 0.03)")));
            }
            if b.is_empty() && self.attacks.iter().any(|a| a.norm == norm) {
                return Err(Error::Usage(format!(
                    "an {} attack was asked for without {} budgets",
                    norm.as_str(),
                    norm.as_str()
                )));
            }
        }
        if self.batch == 0 {
            return Err(Error::Usage("--attack-batch must be at least 1".into()));
        }
        if self.steps == 0 {
            return Err(Error::Usage("--attack-steps must be at least 1 (PGD takes that many steps)".into()));
        }
        if self.restarts == 0 {
            return Err(Error::Usage("--attack-restarts must be at least 1 (the first start counts)".into()));
        }
        // Attacking no image would store a success rate of 0 per class, as
        // if every class had resisted every attack.
        if self.per_class == Some(0) {
            return Err(Error::Usage(
                "--attack-per-class 0: attacks no image; give a count of at least 1 or all \
                 (--no-attacks skips the stage)"
                    .into(),
            ));
        }
        if let Some(r) = self.step_ratio.filter(|r| !(r.is_finite() && *r > 0.0)) {
            return Err(Error::Usage(format!(
                "--attack-step-ratio {r}: the step is this multiple of the budget, a number above 0"
            )));
        }
        Ok(())
    }
}

/// An attacked image.
#[derive(Clone, Debug, PartialEq)]
pub struct Victim {
    pub split: Split,
    /// Row in its split.
    pub row: usize,
    pub label: u32,
    /// Prediction on the clean image.
    pub clean_pred: u32,
    /// Least-likely class on the clean image.
    pub least_likely: u32,
}

/// One image under one attack at one budget.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackRow {
    /// Index into [`AttackResults::victims`].
    pub victim: usize,
    /// Index into [`AttackConfig::attacks`].
    pub attack: usize,
    /// Budget in the attack's norm, [0, 1] pixel units.
    pub budget: f32,
    /// Target class (None: untargeted).
    pub target: Option<u32>,
    pub success: bool,
    pub adv_pred: u32,
    pub adv_prob: f32,
    pub linf: f32,
    pub l2: f32,
    pub steps: u32,
}

/// An adversarial example kept for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub victim: usize,
    pub attack: usize,
    pub budget: f32,
    pub adv_pred: u32,
    /// `[3, h, w]` perturbation, [0, 1] pixel units.
    pub delta: Vec<f32>,
}

/// Everything the attack stage measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttackResults {
    pub victims: Vec<Victim>,
    pub rows: Vec<AttackRow>,
    /// Smallest flipping budget per victim and norm (None: not flipped within
    /// the largest budget, or no untargeted PGD attack in that norm).
    pub radius_linf: Vec<Option<f32>>,
    pub radius_l2: Vec<Option<f32>>,
    pub examples: Vec<Example>,
    /// Attacked images per second (all attacks and budgets of one image count once).
    pub images_per_s: f64,
}

/// Test images attacked per class by default: 40 on the demo (the attack
/// stage then takes about 15 s of its 3 minutes on 2 cores; 20 before the
/// block ops made attacks faster, which left per-class success rates in
/// steps of 5%), 100 elsewhere.
pub fn default_per_class(spec: &crate::data::DatasetSpec) -> usize {
    match spec {
        crate::data::DatasetSpec::Demo(_) => 40,
        _ => 100,
    }
}

/// Picks the images to attack: test images the model classifies correctly
/// (all of them with `include_misclassified`), at most `per_class` per class
/// by a seeded sample, plus `train_per_class` training images per class.
pub fn victims(ds: &Dataset, test_logits: &[f32], train_logits: &[f32], cfg: &AttackConfig) -> Vec<Victim> {
    let k = ds.classes.len();
    let mut rng = ChaCha8Rng::seed_from_u64(crate::seed::attack_victims(cfg.seed));
    let mut out = Vec::new();
    let mut pick = |split: Split, labels: &[u32], logits: &[f32], cap: Option<usize>, only_correct: bool| {
        for c in 0..k as u32 {
            let rows: Vec<usize> = (0..labels.len())
                .filter(|&i| labels[i] == c)
                .filter(|&i| !only_correct || argmax(&logits[i * k..(i + 1) * k]) as u32 == c)
                .collect();
            let chosen: Vec<usize> = match cap {
                Some(m) if m < rows.len() => {
                    let mut s: Vec<usize> =
                        rand::seq::index::sample(&mut rng, rows.len(), m).into_iter().map(|j| rows[j]).collect();
                    s.sort_unstable();
                    s
                }
                _ => rows,
            };
            for i in chosen {
                let row = &logits[i * k..(i + 1) * k];
                let least = argmin(row);
                out.push(Victim {
                    split,
                    row: i,
                    label: c,
                    clean_pred: argmax(row) as u32,
                    least_likely: least as u32,
                });
            }
        }
    };
    pick(Split::Test, &ds.test.labels, test_logits, cfg.per_class, !cfg.include_misclassified);
    if cfg.train_per_class > 0 {
        pick(Split::Train, &ds.train.labels, train_logits, Some(cfg.train_per_class), false);
    }
    out
}

/// Runs every attack at every budget on `victims`, then the radius bisection.
pub fn run(
    model: &ResNet,
    ds: &Dataset,
    victims: Vec<Victim>,
    cfg: &AttackConfig,
    progress: bool,
) -> Result<AttackResults> {
    cfg.validate(&ds.classes)?;
    let model = model.frozen();
    let (h, w) = (ds.height, ds.width);
    let len = 3 * h * w;
    let started = std::time::Instant::now();
    let bar = crate::progress::bar(progress, victims.len() as u64, "attacking");
    let mut res = AttackResults {
        radius_linf: vec![None; victims.len()],
        radius_l2: vec![None; victims.len()],
        ..Default::default()
    };
    for (b, chunk) in (0..victims.len()).collect::<Vec<_>>().chunks(cfg.batch).enumerate() {
        let batch: Vec<&Victim> = chunk.iter().map(|&v| &victims[v]).collect();
        let x0 = pixels_chw(ds, &batch, h, w);
        // Per norm: the bracket of the smallest flipping budget, from the untargeted PGD sweep.
        let mut lo = [vec![0f32; chunk.len()], vec![0f32; chunk.len()]];
        let mut hi: [Vec<Option<f32>>; 2] = [vec![None; chunk.len()], vec![None; chunk.len()]];
        for (a, spec) in cfg.attacks.iter().enumerate() {
            let target_class = match &spec.target {
                Target::Class(c) => ds.classes.iter().position(|n| n == c).map(|p| p as u32),
                _ => None,
            };
            // Images of the target class itself are not attacked towards it.
            let rows: Vec<usize> =
                (0..chunk.len()).filter(|&j| target_class.is_none_or(|t| batch[j].label != t)).collect();
            let goal: Vec<u32> = rows
                .iter()
                .map(|&j| match &spec.target {
                    Target::Untargeted => batch[j].label,
                    Target::LeastLikely => batch[j].least_likely,
                    Target::Class(_) => target_class.expect("validated class"),
                })
                .collect();
            let targeted = spec.target != Target::Untargeted;
            let x_rows: Vec<f32> = rows.iter().flat_map(|&j| x0[j * len..(j + 1) * len].iter().copied()).collect();
            let mut carried: Vec<Option<AttackRow>> = vec![None; rows.len()];
            for (e, &budget) in cfg.budgets(spec.norm).iter().enumerate() {
                let todo: Vec<usize> = (0..rows.len()).filter(|&r| carried[r].is_none()).collect();
                let xs: Vec<f32> = todo.iter().flat_map(|&r| x_rows[r * len..(r + 1) * len].iter().copied()).collect();
                let g: Vec<u32> = todo.iter().map(|&r| goal[r]).collect();
                let seed = crate::seed::attack_batch(cfg.seed, b, a, e);
                let o = pgd::attack(
                    &model,
                    &xs,
                    (3, h, w),
                    &g,
                    targeted,
                    &vec![budget; todo.len()],
                    spec.norm,
                    &cfg.steps_of(spec.method),
                    seed,
                )?;
                for (t, &r) in todo.iter().enumerate() {
                    let row = AttackRow {
                        victim: chunk[rows[r]],
                        attack: a,
                        budget,
                        target: targeted.then_some(goal[r]),
                        success: o.success[t],
                        adv_pred: o.adv_pred[t],
                        adv_prob: o.adv_prob[t],
                        linf: o.linf[t],
                        l2: o.l2[t],
                        steps: o.steps[t],
                    };
                    if o.success[t] {
                        carried[r] = Some(row.clone());
                        if res.examples.iter().filter(|x| victims[x.victim].label == victims[row.victim].label).count()
                            < cfg.png_per_class
                            && spec.is_radius_source(Norm::Linf)
                        {
                            res.examples.push(Example {
                                victim: row.victim,
                                attack: a,
                                budget,
                                adv_pred: row.adv_pred,
                                delta: o.delta[t * len..(t + 1) * len].to_vec(),
                            });
                        }
                    }
                    res.rows.push(row);
                }
                for r in (0..rows.len()).filter(|r| !todo.contains(r)) {
                    let mut row = carried[r].clone().expect("carried success");
                    row.budget = budget;
                    res.rows.push(row);
                }
                if spec.is_radius_source(spec.norm) {
                    let n = norm_index(spec.norm);
                    for (r, &j) in rows.iter().enumerate() {
                        if hi[n][j].is_none() {
                            if carried[r].is_some() {
                                hi[n][j] = Some(budget);
                            } else {
                                lo[n][j] = budget;
                            }
                        }
                    }
                }
            }
        }
        if cfg.radius {
            for norm in [Norm::Linf, Norm::L2] {
                if !cfg.attacks.iter().any(|s| s.is_radius_source(norm)) {
                    continue;
                }
                let n = norm_index(norm);
                let tol = cfg.radius_tolerance * cfg.budgets(norm).iter().copied().find(|&b| b > 0.0).unwrap_or(1.0);
                let labels: Vec<u32> = batch.iter().map(|v| v.label).collect();
                let seed = crate::seed::attack_batch(cfg.seed, b, usize::MAX - n, 0);
                let r = radius::bisect(
                    &model,
                    &x0,
                    (3, h, w),
                    &labels,
                    false,
                    &lo[n],
                    &hi[n],
                    tol,
                    norm,
                    &cfg.steps_of(Method::Pgd),
                    seed,
                )?;
                for (j, v) in r.into_iter().enumerate() {
                    let slot = if norm == Norm::Linf { &mut res.radius_linf } else { &mut res.radius_l2 };
                    slot[chunk[j]] = v;
                }
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    res.images_per_s = victims.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);
    res.victims = victims;
    Ok(res)
}

fn norm_index(norm: Norm) -> usize {
    match norm {
        Norm::Linf => 0,
        Norm::L2 => 1,
    }
}

/// `[n, 3, h, w]` f32 in [0, 1] of the victims' images (the model's own input conversion).
fn pixels_chw(ds: &Dataset, batch: &[&Victim], h: usize, w: usize) -> Vec<f32> {
    let px: Vec<u8> = batch.iter().flat_map(|v| ds.image(v.split, v.row).iter().copied()).collect();
    model::images_to_chw(&px, batch.len(), h, w)
}

/// Success of one attack at one budget within one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassSuccess {
    pub class: u32,
    pub attack: String,
    pub budget: f32,
    pub attacked: usize,
    pub successes: usize,
    pub rate: f64,
    /// 95% Wilson interval.
    pub low: f64,
    pub high: f64,
}

/// Per class, attack and budget: success rate with its interval (test-split victims only).
pub fn class_success(res: &AttackResults, cfg: &AttackConfig, k: usize) -> Vec<ClassSuccess> {
    let mut out = Vec::new();
    for (a, spec) in cfg.attacks.iter().enumerate() {
        for budget in cfg.budgets(spec.norm) {
            for c in 0..k as u32 {
                let rows: Vec<&AttackRow> = res
                    .rows
                    .iter()
                    .filter(|r| r.attack == a && r.budget == budget)
                    .filter(|r| res.victims[r.victim].label == c && res.victims[r.victim].split == Split::Test)
                    .collect();
                let (n, s) = (rows.len(), rows.iter().filter(|r| r.success).count());
                let (low, high) = wilson(s, n, Z95);
                out.push(ClassSuccess {
                    class: c,
                    attack: spec.name(),
                    budget,
                    attacked: n,
                    successes: s,
                    rate: if n > 0 { s as f64 / n as f64 } else { 0.0 },
                    low,
                    high,
                });
            }
        }
    }
    out
}

/// Median smallest flipping budget of each class's test victims, counting an
/// image not flipped within the largest budget as above every flipped one
/// (None when the median falls among those, or nothing was attacked).
pub fn median_radius(res: &AttackResults, radius: &[Option<f32>], k: usize) -> Vec<Option<f32>> {
    (0..k as u32)
        .map(|c| {
            let r: Vec<f32> = (0..res.victims.len())
                .filter(|&i| res.victims[i].label == c && res.victims[i].split == Split::Test)
                .map(|i| radius.get(i).copied().flatten().unwrap_or(f32::INFINITY))
                .collect();
            median(&r).filter(|m| m.is_finite())
        })
        .collect()
}

/// Writes each example as one PNG in `dir`: the original, the perturbation
/// magnified to fill the grey range (mid-grey is zero), and the adversarial
/// image, side by side and scaled up 4x. Returns the file names.
pub fn write_examples(
    ds: &Dataset,
    res: &AttackResults,
    cfg: &AttackConfig,
    dir: &std::path::Path,
) -> Result<Vec<String>> {
    const SCALE: u32 = 4;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (h, w) = (ds.height, ds.width);
    let plane = h * w;
    let mut names = Vec::new();
    for ex in &res.examples {
        let v = &res.victims[ex.victim];
        let set = ds.split(v.split);
        let id: String = set.ids[v.row].chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let attack = cfg.attacks[ex.attack].name().replace(':', "-");
        let name = format!("{id}_{attack}_{}.png", ds.classes[ex.adv_pred as usize]);
        let px = &set.pixels[v.row * plane * 3..(v.row + 1) * plane * 3];
        let peak = ex.delta.iter().fold(1e-12f32, |a, d| a.max(d.abs()));
        let mut img = image::RgbImage::new(3 * w as u32 * SCALE, h as u32 * SCALE);
        for y in 0..h {
            for x in 0..w {
                let mut orig = [0u8; 3];
                let mut pert = [0u8; 3];
                let mut adv = [0u8; 3];
                for c in 0..3 {
                    let p = px[(y * w + x) * 3 + c];
                    let d = ex.delta[c * plane + y * w + x];
                    orig[c] = p;
                    pert[c] = (127.5 + 127.5 * d / peak).round().clamp(0.0, 255.0) as u8;
                    adv[c] = ((p as f32 / 255.0 + d).clamp(0.0, 1.0) * 255.0).round() as u8;
                }
                for (panel, rgb) in [orig, pert, adv].into_iter().enumerate() {
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            let px_x = (panel * w + x) as u32 * SCALE + dx;
                            img.put_pixel(px_x, y as u32 * SCALE + dy, image::Rgb(rgb));
                        }
                    }
                }
            }
        }
        let path = dir.join(&name);
        img.save(&path).map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
        names.push(name);
    }
    Ok(names)
}

/// Success of one attack at one budget over every test victim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverallSuccess {
    pub attack: String,
    pub budget: f32,
    pub attacked: usize,
    pub successes: usize,
    pub rate: f64,
}

/// What `run.json` keeps of the attack stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackSummary {
    pub config: AttackConfig,
    pub victims: usize,
    /// Attacked images per second, every attack and budget of an image included.
    pub images_per_s: f64,
    pub overall: Vec<OverallSuccess>,
    pub per_class: Vec<ClassSuccess>,
    pub median_radius_linf: Vec<Option<f32>>,
    pub median_radius_l2: Vec<Option<f32>>,
    /// PNG files of adversarial examples, relative to the run folder.
    pub examples: Vec<String>,
}

impl crate::run::Section for AttackSummary {
    const KEY: &'static str = "attacks";
}

impl AttackSummary {
    /// Summarises `res` over `k` classes. (How success relates to the miss
    /// rates is the findings' to say: `correlations.parquet`.)
    pub fn new(res: &AttackResults, cfg: &AttackConfig, k: usize) -> Self {
        let per_class = class_success(res, cfg, k);
        let mut overall = Vec::new();
        for spec in &cfg.attacks {
            for budget in cfg.budgets(spec.norm) {
                let name = spec.name();
                let rows: Vec<&ClassSuccess> =
                    per_class.iter().filter(|c| c.attack == name && c.budget == budget).collect();
                let (n, s): (usize, usize) = rows.iter().fold((0, 0), |(n, s), c| (n + c.attacked, s + c.successes));
                overall.push(OverallSuccess {
                    attack: name,
                    budget,
                    attacked: n,
                    successes: s,
                    rate: if n > 0 { s as f64 / n as f64 } else { 0.0 },
                });
            }
        }
        AttackSummary {
            config: cfg.clone(),
            victims: res.victims.len(),
            images_per_s: res.images_per_s,
            overall,
            per_class,
            median_radius_linf: median_radius(res, &res.radius_linf, k),
            median_radius_l2: median_radius(res, &res.radius_l2, k),
            examples: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_specs_parse_and_name_round_trip() {
        for s in ["pgd:linf", "fgsm:l2", "pgd:linf:least-likely", "pgd:l2:cat"] {
            assert_eq!(AttackSpec::parse(s).unwrap().name(), s);
        }
        for bad in ["pgd", "cw:linf", "pgd:l1", "pgd:linf:", "pgd:linf:a:b"] {
            let e = AttackSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}

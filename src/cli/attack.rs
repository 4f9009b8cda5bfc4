//! The attack stage's options of `misfit audit`.

use clap::Args;
use misfit::attack;
use misfit::data::DatasetSpec;

/// The attack stage of the audit.
#[derive(Args, Clone)]
pub struct AttackArgs {
    /// Skip the attack stage.
    #[arg(long)]
    no_attacks: bool,
    /// Attacks, METHOD:NORM[:TARGET] (method fgsm or pgd, norm linf or l2,
    /// target least-likely or a class name; untargeted without one).
    #[arg(long, value_delimiter = ',', default_value = "fgsm:linf,pgd:linf,pgd:linf:least-likely,pgd:l2")]
    attacks: Vec<String>,
    /// L-inf budgets in [0, 1] pixel units; fractions allowed (8/255).
    #[arg(long, value_delimiter = ',', default_value = "1/255,2/255,4/255,8/255")]
    eps: Vec<String>,
    /// L2 budgets in [0, 1] pixel units (norm over all values of an image).
    #[arg(long, value_delimiter = ',', default_value = "0.125,0.25,0.5,1")]
    eps_l2: Vec<String>,
    /// PGD steps.
    #[arg(long, default_value_t = 10)]
    attack_steps: usize,
    /// PGD step size as a multiple of the budget (default 2.5 / steps).
    #[arg(long)]
    attack_step_ratio: Option<f32>,
    /// PGD random restarts.
    #[arg(long, default_value_t = 1)]
    attack_restarts: usize,
    /// Test images attacked per class (a seeded sample), or `all`
    /// (default: 100; 40 on the built-in demo, to keep it within 3 minutes).
    #[arg(long)]
    attack_per_class: Option<String>,
    /// Also attack test images the model misclassifies (flipped at budget 0).
    #[arg(long)]
    attack_misclassified: bool,
    /// Also attack this many training images per class.
    #[arg(long, default_value_t = 0)]
    attack_train_per_class: usize,
    /// Skip the bisection for each image's smallest flipping budget.
    #[arg(long)]
    no_radius: bool,
    /// Images per attack batch.
    #[arg(long, default_value_t = 256)]
    attack_batch: usize,
}

impl AttackArgs {
    pub fn config(&self, spec: &DatasetSpec) -> anyhow::Result<Option<attack::AttackConfig>> {
        if self.no_attacks {
            return Ok(None);
        }
        let budgets = |v: &[String], flag: &str| -> anyhow::Result<Vec<f32>> {
            v.iter()
                .map(|b| {
                    let parsed = match b.split_once('/') {
                        Some((n, d)) => {
                            n.trim().parse::<f32>().ok().zip(d.trim().parse::<f32>().ok()).map(|(n, d)| n / d)
                        }
                        None => b.trim().parse::<f32>().ok(),
                    };
                    parsed.ok_or_else(|| anyhow::anyhow!("{flag} '{b}': not a number or fraction"))
                })
                .collect()
        };
        let per_class = match self.attack_per_class.as_deref() {
            None => Some(attack::default_per_class(spec)),
            Some("all") => None,
            Some(n) => {
                Some(n.parse::<usize>().map_err(|_| anyhow::anyhow!("--attack-per-class '{n}': a count or all"))?)
            }
        };
        Ok(Some(attack::AttackConfig {
            attacks: self.attacks.iter().map(|a| attack::AttackSpec::parse(a)).collect::<Result<_, _>>()?,
            eps_linf: budgets(&self.eps, "--eps")?,
            eps_l2: budgets(&self.eps_l2, "--eps-l2")?,
            steps: self.attack_steps,
            step_ratio: self.attack_step_ratio,
            restarts: self.attack_restarts,
            radius: !self.no_radius,
            per_class,
            include_misclassified: self.attack_misclassified,
            train_per_class: self.attack_train_per_class,
            batch: self.attack_batch,
            ..attack::AttackConfig::default()
        }))
    }
}

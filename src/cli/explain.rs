//! The explain stage's options of `misfit audit`.

use clap::Args;
use misfit::saliency;

/// The explain stage of the audit: saliency maps, their checks, root-cause numbers.
#[derive(Args, Clone)]
pub struct ExplainArgs {
    /// Skip the explain stage.
    #[arg(long)]
    no_explain: bool,
    /// Attribution methods: gradient, smoothgrad, integrated-gradients, grad-cam.
    #[arg(long, value_delimiter = ',', default_value = "gradient,smoothgrad,integrated-gradients,grad-cam")]
    explain_methods: Vec<String>,
    /// Confused class pairs explained (unordered, most test confusions first).
    #[arg(long, default_value_t = 6)]
    explain_pairs: usize,
    /// Test confusions (both directions together) a pair needs to be explained.
    #[arg(long, default_value_t = 4)]
    explain_min_confusions: usize,
    /// Misclassified test images explained per direction of a pair (and as
    /// many correctly classified images of its given class for contrast).
    #[arg(long, default_value_t = 8)]
    explain_per_pair: usize,
    /// Flagged training images explained (the most suspicious first).
    #[arg(long, default_value_t = 12)]
    explain_flagged: usize,
    /// Images of the model-randomisation check.
    #[arg(long, default_value_t = 8)]
    sanity_images: usize,
    /// Images of A attacked towards B per direction of an explained pair.
    #[arg(long, default_value_t = 8)]
    explain_attacked: usize,
    /// SmoothGrad's noise standard deviation, as a share of the [0, 1] pixel
    /// range (before the model's normalisation).
    #[arg(long, default_value_t = 0.15)]
    smoothgrad_noise: f32,
    /// SmoothGrad's noisy copies per image.
    #[arg(long, default_value_t = 25)]
    smoothgrad_samples: usize,
    /// Integrated Gradients' steps.
    #[arg(long, default_value_t = 50)]
    ig_steps: usize,
    /// Integrated Gradients' baseline: black, white or blur.
    #[arg(long, default_value = "black")]
    ig_baseline: String,
    /// What the deletion and insertion curves fill pixels with: blur or mean.
    #[arg(long, default_value = "blur")]
    explain_fill: String,
    /// Images (or noisy copies, or path points) per explain batch.
    #[arg(long, default_value_t = 256)]
    explain_batch: usize,
}

impl ExplainArgs {
    pub fn config(&self) -> anyhow::Result<Option<saliency::ExplainConfig>> {
        if self.no_explain {
            return Ok(None);
        }
        let methods = self
            .explain_methods
            .iter()
            .map(|m| {
                saliency::Method::parse(m.trim()).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--explain-methods '{m}': not a method (gradient, smoothgrad, integrated-gradients, grad-cam)"
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ig_baseline = match self.ig_baseline.as_str() {
            "black" => saliency::Baseline::Black,
            "white" => saliency::Baseline::White,
            "blur" => saliency::Baseline::Blur,
            b => anyhow::bail!("--ig-baseline '{b}': black, white or blur"),
        };
        let fill = match self.explain_fill.as_str() {
            "blur" => saliency::Fill::Blur,
            "mean" => saliency::Fill::Mean,
            f => anyhow::bail!("--explain-fill '{f}': blur or mean"),
        };
        let cfg = saliency::ExplainConfig {
            methods,
            method: saliency::MethodConfig {
                smoothgrad_noise: self.smoothgrad_noise,
                smoothgrad_samples: self.smoothgrad_samples,
                ig_steps: self.ig_steps,
                ig_baseline,
                batch: self.explain_batch,
            },
            fill,
            pairs: self.explain_pairs,
            min_confusions: self.explain_min_confusions,
            per_pair: self.explain_per_pair,
            flagged: self.explain_flagged,
            sanity_images: self.sanity_images,
            targeted_per_pair: self.explain_attacked,
            seed: 0,
        };
        // Checked with the rest of the audit's options, before any training (AuditOptions).
        Ok(Some(cfg))
    }
}

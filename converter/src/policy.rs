//! Which precision each tensor is stored at. The policy is data: an ordered list of rules (glob ->
//! minimum precision, with a reason), recorded in the model file's meta section; `--keep` overrides
//! come first. A rule never lowers precision: a tensor is stored at the wider of the requested
//! precision and the first matching floor.

use gaga_runtime::format::meta::glob_match;
use gaga_runtime::format::{PrecisionRule, Reason};

/// A storage precision, ordered from narrowest to widest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precision {
    Int8,
    Fp16,
    Fp32,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            Precision::Fp16 => "fp16",
            Precision::Fp32 => "fp32",
        }
    }
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "int8" => Some(Precision::Int8),
            "fp16" => Some(Precision::Fp16),
            "fp32" => Some(Precision::Fp32),
            _ => None,
        }
    }
}

/// A `--keep PATTERN=fp32|fp16` override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keep {
    pub pattern: String,
    pub precision: Precision,
}

impl Keep {
    /// Parses `PATTERN=fp32` or `PATTERN=fp16`.
    pub fn parse(s: &str) -> Result<Keep, String> {
        let (pattern, p) = s.rsplit_once('=').ok_or_else(|| format!("--keep `{s}`: expected PATTERN=fp32 or PATTERN=fp16"))?;
        let precision = match Precision::parse(p) {
            Some(p @ (Precision::Fp32 | Precision::Fp16)) => p,
            _ => return Err(format!("--keep `{s}`: precision `{p}`, expected fp32 or fp16")),
        };
        if pattern.is_empty() {
            return Err(format!("--keep `{s}`: empty pattern"));
        }
        Ok(Keep { pattern: pattern.to_string(), precision })
    }
    pub fn spelled(&self) -> String {
        format!("{}={}", self.pattern, self.precision.name())
    }
}

/// Name of the built-in rule for tensors int8 cannot hold (no output-channel axis).
pub const VECTOR_RULE: &str = "(rank < 2)";

/// The default policy (first match wins).
pub fn default_rules() -> Vec<PrecisionRule> {
    let r = |pattern: &str, precision: Precision, reason: &str| PrecisionRule {
        pattern: pattern.to_string(),
        precision: precision.name().to_string(),
        reason: reason.to_string(),
    };
    use Precision::{Fp16, Fp32};
    vec![
        r("flame.*", Fp32, "FLAME arrays: geometry is evaluated in fp32"),
        r("*.noises.noise*", Fp32, "fixed noise buffers"),
        r("*norm*", Fp32, "normalisation parameters"),
        r("*.gamma", Fp32, "LayerScale"),
        r("*.bias", Fp32, "biases"),
        r("*.style_conv1.weight", Fp32, "noise strength"),
        r("*.style_convs.?.weight", Fp32, "noise strength"),
        r("*.style_convs.??.weight", Fp32, "noise strength"),
        r("head_base", Fp16, "learned embedding"),
        r("*.pos_embed", Fp16, "learned embedding"),
        r("*.cls_token", Fp16, "learned embedding"),
        r("*.constant_input.weight", Fp16, "learned embedding"),
        r("*.patch_embed.*", Fp16, "first layer"),
        r("upsampler.conv_body_first.*", Fp16, "first layer"),
        r("upsampler.final_conv.weight", Fp16, "feeds the style code of every decoder conv: int8 there alone costs the most PSNR"),
        r("*.gaussian_conv.6.*", Fp16, "last layer of a Gaussian generator"),
        r("gs_generator_g.*_layers.2.*", Fp16, "last layer of a Gaussian generator"),
        r("*.to_rgb*", Fp16, "last layers of the refiner"),
        r("*.modulation.*", Fp16, "style modulation: fp16 at most"),
        r(VECTOR_RULE, Fp16, "int8 needs an output-channel axis"),
    ]
}

/// The decided storage precision of one float tensor and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub precision: Precision,
    pub reason: Reason,
}

/// Decides the precision of float tensor `name` of rank `rank`.
pub fn decide(name: &str, rank: usize, requested: Precision, rules: &[PrecisionRule], keep: &[Keep]) -> Decision {
    let floor = |p: Precision, reason: Reason| {
        if p > requested {
            Decision { precision: p, reason }
        } else {
            Decision { precision: requested, reason: Reason::Requested }
        }
    };
    if let Some(k) = keep.iter().find(|k| glob_match(&k.pattern, name)) {
        return floor(k.precision, Reason::UserOverride);
    }
    let matched = rules.iter().find(|r| if r.pattern == VECTOR_RULE { rank < 2 } else { glob_match(&r.pattern, name) });
    match matched.and_then(|r| Precision::parse(&r.precision)) {
        Some(p) => floor(p, Reason::PolicyRule),
        None => Decision { precision: requested, reason: Reason::Requested },
    }
}

/// The output-channel axis of a weight, the axis int8 scales run along: 1 for ConvTranspose weights
/// (`[in, out, k, k]`) and StyleGAN2 modulated convs (`[1, out, in, k, k]`), 0 otherwise.
pub fn output_axis(name: &str) -> u8 {
    let transposed = name.starts_with("base_model.resize_layers.0.") || name.starts_with("base_model.resize_layers.1.");
    if transposed || name.ends_with("modulated_conv.weight") {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, rank: usize, p: Precision) -> Decision {
        decide(name, rank, p, &default_rules(), &[])
    }

    #[test]
    fn large_conv_weights_take_the_requested_precision() {
        let w = d("upsampler.condition_scale.0.0.weight", 4, Precision::Int8);
        assert_eq!(w, Decision { precision: Precision::Int8, reason: Reason::Requested });
    }

    #[test]
    fn sensitive_tensors_stay_wide_under_int8() {
        let cases = [
            ("flame.shapedirs", Precision::Fp32),
            ("upsampler.stylegan_decoder.noises.noise3", Precision::Fp32),
            ("base_model.dino_model.blocks.3.norm1.weight", Precision::Fp32),
            ("base_model.dino_model.blocks.3.ls2.gamma", Precision::Fp32),
            ("upsampler.final_conv.bias", Precision::Fp32),
            ("upsampler.final_conv.weight", Precision::Fp16),
            ("upsampler.stylegan_decoder.style_convs.12.weight", Precision::Fp32),
            ("head_base", Precision::Fp16),
            ("base_model.dino_model.patch_embed.proj.weight", Precision::Fp16),
            ("upsampler.stylegan_decoder.to_rgbs.2.modulated_conv.weight", Precision::Fp16),
            ("upsampler.stylegan_decoder.style_convs.3.modulated_conv.modulation.weight", Precision::Fp16),
            ("gs_generator_l1.gaussian_conv.6.weight", Precision::Fp16),
        ];
        for (name, want) in cases {
            let got = d(name, 2, Precision::Int8);
            assert_eq!((got.precision, got.reason), (want, Reason::PolicyRule), "{name}");
        }
        assert_eq!(d("upsampler.stylegan_decoder.style_convs.3.modulated_conv.weight", 5, Precision::Int8).precision, Precision::Int8);
    }

    #[test]
    fn rules_never_lower_the_requested_precision() {
        let got = d("head_base", 2, Precision::Fp32);
        assert_eq!(got, Decision { precision: Precision::Fp32, reason: Reason::Requested });
    }

    #[test]
    fn keep_override_wins_and_is_recorded() {
        let keep = [Keep::parse("upsampler.final_conv.*=fp32").expect("valid")];
        let got = decide("upsampler.final_conv.weight", 4, Precision::Int8, &default_rules(), &keep);
        assert_eq!(got, Decision { precision: Precision::Fp32, reason: Reason::UserOverride });
    }

    #[test]
    fn keep_accepts_only_fp32_and_fp16() {
        assert!(Keep::parse("x=int8").is_err());
        assert!(Keep::parse("x").is_err());
        assert!(Keep::parse("=fp32").is_err());
        assert_eq!(Keep::parse("a=b=fp16").map(|k| k.pattern), Ok("a=b".to_string()));
    }

    #[test]
    fn output_axis_follows_the_weight_layout() {
        assert_eq!(output_axis("base_model.resize_layers.0.weight"), 1);
        assert_eq!(output_axis("base_model.resize_layers.3.weight"), 0);
        assert_eq!(output_axis("upsampler.stylegan_decoder.style_convs.0.modulated_conv.weight"), 1);
        assert_eq!(output_axis("upsampler.final_linear.weight"), 0);
    }
}

//! CPU twins of the compute shaders in `kernels/shaders/`: each function does exactly what its shader
//! does per invocation (same loop order, same rounding points, same host-computed constants), so a GPU
//! result can be compared with its twin bit for bit and a mismatch bisected to one element.
//!
//! This module also owns each shader's interface, written once: the `#[repr(C)]` push-constant struct
//! (field order and types mirror the GLSL `push_constant` block), the specialization constants, and the
//! shipped SPIR-V bytes (`include_bytes!` of the `.spv` that `kernels/shaders/check.sh` keeps current).
//! The Vulkan backend binds buffers and fills these structs; it never restates the layout.

pub use half::f16;

pub mod bilinear;
pub mod conv2d;
pub mod demod;
pub mod elementwise;
pub mod flame;
pub mod layout;
pub mod lift_dense;
pub mod lift_maps;
pub mod matvec;
pub mod refiner_conv;
pub mod splat;
pub mod splat_bin;
pub mod splat_project;
pub mod splat_raster;
pub mod stored;

/// Shipped SPIR-V of `kernels/shaders/conv2d.comp`.
pub const CONV2D_SPV: &[u8] = include_bytes!("../../shaders/conv2d.spv");
/// Shipped SPIR-V of `kernels/shaders/conv2d.comp` built with `-DSTORAGE_F16`.
pub const CONV2D_F16_SPV: &[u8] = include_bytes!("../../shaders/conv2d_f16.spv");
/// Shipped SPIR-V of `kernels/shaders/bilinear.comp`.
pub const BILINEAR_SPV: &[u8] = include_bytes!("../../shaders/bilinear.spv");
/// Shipped SPIR-V of `kernels/shaders/elementwise.comp`.
pub const ELEMENTWISE_SPV: &[u8] = include_bytes!("../../shaders/elementwise.spv");

/// Shipped SPIR-V of `kernels/shaders/flame_lbs.comp`.
pub const FLAME_LBS_SPV: &[u8] = include_bytes!("../../shaders/flame_lbs.spv");

/// Shipped SPIR-V of `kernels/shaders/refiner_conv.comp` (the StyleUNet's convolutions).
pub const REFINER_CONV_SPV: &[u8] = include_bytes!("../../shaders/refiner_conv.spv");
/// Shipped SPIR-V of `kernels/shaders/matvec.comp` (linear layers on one vector).
pub const MATVEC_SPV: &[u8] = include_bytes!("../../shaders/matvec.spv");
/// Shipped SPIR-V of `kernels/shaders/demod.comp` (StyleGAN2 demodulation factors).
pub const DEMOD_SPV: &[u8] = include_bytes!("../../shaders/demod.spv");

/// Shipped SPIR-V of `kernels/shaders/lift_linear.comp` (the lift's linear layers).
pub const LIFT_LINEAR_SPV: &[u8] = include_bytes!("../../shaders/lift_linear.spv");
/// Shipped SPIR-V of `kernels/shaders/lift_layernorm.comp`.
pub const LIFT_LAYERNORM_SPV: &[u8] = include_bytes!("../../shaders/lift_layernorm.spv");
/// Shipped SPIR-V of `kernels/shaders/lift_attention.comp`.
pub const LIFT_ATTENTION_SPV: &[u8] = include_bytes!("../../shaders/lift_attention.spv");
/// Shipped SPIR-V of `kernels/shaders/lift_maps.comp` (strided copies, LayerScale residual adds).
pub const LIFT_MAPS_SPV: &[u8] = include_bytes!("../../shaders/lift_maps.spv");
/// Shipped SPIR-V of `kernels/shaders/lift_deconv.comp` (DPT's transposed convolutions).
pub const LIFT_DECONV_SPV: &[u8] = include_bytes!("../../shaders/lift_deconv.spv");

/// One specialization constant value as the shader declares it (`constant_id`, 4-byte value).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SpecValue {
    U32(u32),
    F32(f32),
    /// GLSL `bool` constants are 32-bit in SPIR-V (0 or 1).
    Bool(bool),
}

impl SpecValue {
    /// The 4 bytes Vulkan reads for this constant.
    pub fn to_bytes(self) -> [u8; 4] {
        match self {
            SpecValue::U32(v) => v.to_ne_bytes(),
            SpecValue::F32(v) => v.to_ne_bytes(),
            SpecValue::Bool(v) => u32::from(v).to_ne_bytes(),
        }
    }
}

/// Number of workgroups to cover `n` items with groups of `size` (at least one).
pub fn groups(n: usize, size: u32) -> u32 {
    (n.div_ceil(size as usize)).max(1) as u32
}

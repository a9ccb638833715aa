//! The lift: one source photo -> the avatar's Gaussians (run once per person).

pub mod dino;
pub mod dpt;
pub mod generators;

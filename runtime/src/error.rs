//! The runtime's one error type. Every variant names the thing that is wrong (file, tensor, offset,
//! frame, field) and, where it applies, what was expected and what was found.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A model file that is not a valid `.gaga` file; `what` says which check failed and where.
    #[error("{path}: {what}")]
    Format { path: PathBuf, what: String },
    #[error("tensor `{name}` is missing from the model")]
    MissingTensor { name: String },
    #[error("tensor `{name}`: expected shape {expected:?}, found {found:?}")]
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("model configuration: {0}")]
    Config(String),
    /// Bad driving or source input: `source` names the file, `frame` the frame key or index, `field` the value.
    #[error("{source_name}: frame {frame}: field `{field}`: {what}")]
    Input { source_name: String, frame: String, field: String, what: String },
    /// A Vulkan step failed: `what` names the step, the device and the reason (`VkResult` or missing feature).
    #[error("Vulkan: {0}")]
    Vulkan(String),
    /// An allocation that would exceed the memory budget declared at session open.
    #[error("allocation `{name}` needs {needed} bytes but {used} of the {budget}-byte budget are in use (largest: {largest})")]
    OverBudget { name: String, needed: u64, used: u64, budget: u64, largest: String },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

//! A pickle reader (protocols 2-5) that evaluates nothing.
//!
//! `load` runs the pickle virtual machine over a byte slice and returns a `Value` tree. Globals are
//! checked against the caller's allowlist as they are met; REDUCE, NEWOBJ and BUILD are recorded, not
//! called (`Value::Reduce`, `Value::Build`), and persistent ids become `Value::PersistentId`, so the
//! consumer decides what a `torch._utils._rebuild_tensor_v2(...)` or a numpy `_reconstruct(...)` means.
//!
//! Hostile input errors out: every read is bounds-checked, unknown opcodes are refused by value, and the
//! tree built from shared memo entries is limited in depth, node count and byte count (a pickle can
//! reference one large object many times; the tree copies it, so copies are budgeted).

mod tree;
mod value;
mod vm;

#[cfg(test)]
mod tests;

pub use value::Value;

/// Why a pickle was refused. Every variant carries the byte offset of the opcode that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    #[error("pickle offset {offset}: input ends inside opcode 0x{opcode:02x}")]
    Truncated { offset: usize, opcode: u8 },
    #[error("pickle offset {offset}: unsupported opcode 0x{opcode:02x}")]
    UnknownOpcode { offset: usize, opcode: u8 },
    #[error("pickle offset {offset}: global `{module}.{name}` is not allowed here")]
    GlobalNotAllowed { offset: usize, module: String, name: String },
    #[error("pickle offset {offset}: opcode 0x{opcode:02x}: {what}")]
    Invalid { offset: usize, opcode: u8, what: String },
    #[error("pickle: {what} exceeds the limit of {limit}")]
    TooLarge { what: &'static str, limit: usize },
    #[error("pickle: input ends without a STOP opcode")]
    NoStop,
}

/// Runs the pickle in `bytes` and returns the object that STOP leaves on the stack.
///
/// `allowed` lists the `(module, name)` globals the caller can interpret; any other GLOBAL or
/// STACK_GLOBAL fails with `PickleError::GlobalNotAllowed` naming it.
pub fn load(bytes: &[u8], allowed: &[(&str, &str)]) -> Result<Value, PickleError> {
    vm::Machine::new(bytes, allowed).run()
}

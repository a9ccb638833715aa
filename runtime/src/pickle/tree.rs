//! Copies the arena graph the VM built into a `Value` tree, under depth, node and byte budgets (a
//! pickle may reference one object many times, or itself; each reference becomes a copy).

use super::vm::{Ix, Node};
use super::{PickleError, Value};

/// Deepest nesting accepted in the output tree; real checkpoints nest fewer than 10 levels.
const MAX_DEPTH: usize = 128;

pub(super) fn to_value(arena: &[Node], ix: Ix, depth: usize, budget: &mut Budget) -> Result<Value, PickleError> {
    if depth > MAX_DEPTH {
        return Err(PickleError::TooLarge { what: "nesting depth", limit: MAX_DEPTH });
    }
    budget.spend_node()?;
    let seq = |v: &[Ix], budget: &mut Budget| -> Result<Vec<Value>, PickleError> {
        v.iter().map(|&i| to_value(arena, i, depth + 1, budget)).collect()
    };
    let pairs = |v: &[(Ix, Ix)], budget: &mut Budget| -> Result<Vec<(Value, Value)>, PickleError> {
        v.iter().map(|&(k, x)| Ok((to_value(arena, k, depth + 1, budget)?, to_value(arena, x, depth + 1, budget)?))).collect()
    };
    Ok(match &arena[ix] {
        Node::Leaf(v) => {
            if let Value::Str(s) = v {
                budget.spend_bytes(s.len())?;
            } else if let Value::Bytes(b) = v {
                budget.spend_bytes(b.len())?;
            }
            v.clone()
        }
        Node::Tuple(v) => Value::Tuple(seq(v, budget)?),
        Node::List(v) => Value::List(seq(v, budget)?),
        Node::Set(v) => Value::Set(seq(v, budget)?),
        Node::FrozenSet(v) => Value::FrozenSet(seq(v, budget)?),
        Node::Dict(d) => Value::Dict(pairs(d, budget)?),
        Node::Global(m, n) => Value::Global { module: m.clone(), name: n.clone() },
        Node::Reduce { func, args, items, appended } => Value::Reduce {
            func: func.clone(),
            args: Box::new(to_value(arena, *args, depth + 1, budget)?),
            items: pairs(items, budget)?,
            appended: seq(appended, budget)?,
        },
        Node::Build { obj, state } => Value::Build {
            obj: Box::new(to_value(arena, *obj, depth + 1, budget)?),
            state: Box::new(to_value(arena, *state, depth + 1, budget)?),
        },
        Node::PersistentId(id) => Value::PersistentId(Box::new(to_value(arena, *id, depth + 1, budget)?)),
    })
}

pub(super) struct Budget {
    pub(super) nodes: usize,
    pub(super) bytes: usize,
    pub(super) node_limit: usize,
    pub(super) byte_limit: usize,
}

impl Budget {
    fn spend_node(&mut self) -> Result<(), PickleError> {
        self.nodes = self.nodes.checked_sub(1).ok_or(PickleError::TooLarge { what: "object count", limit: self.node_limit })?;
        Ok(())
    }
    fn spend_bytes(&mut self, n: usize) -> Result<(), PickleError> {
        self.bytes = self.bytes.checked_sub(n).ok_or(PickleError::TooLarge { what: "copied string bytes", limit: self.byte_limit })?;
        Ok(())
    }
}

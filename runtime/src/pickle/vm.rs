//! The pickle virtual machine. Objects live in an arena and the stack and memo hold arena indices, so
//! in-place mutation (SETITEMS after MEMOIZE, BUILD on a memoised object) is seen through every
//! reference, as in Python, without reference counting; `to_value` then copies the reachable graph
//! into a `Value` tree under depth, node and byte budgets.

use std::collections::HashMap;

use super::tree::{to_value, Budget};
use super::{PickleError, Value};

pub(super) type Ix = usize;

pub(super) enum Node {
    Leaf(Value),
    Tuple(Vec<Ix>),
    List(Vec<Ix>),
    Dict(Vec<(Ix, Ix)>),
    Set(Vec<Ix>),
    FrozenSet(Vec<Ix>),
    Global(String, String),
    Reduce { func: (String, String), args: Ix, items: Vec<(Ix, Ix)>, appended: Vec<Ix> },
    Build { obj: Ix, state: Ix },
    PersistentId(Ix),
}

pub(super) struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    /// Offset and opcode being executed, for error messages.
    op_at: usize,
    op: u8,
    allowed: &'a [(&'a str, &'a str)],
    arena: Vec<Node>,
    stack: Vec<Ix>,
    marks: Vec<usize>,
    memo: HashMap<u64, Ix>,
}

impl<'a> Machine<'a> {
    pub(super) fn new(input: &'a [u8], allowed: &'a [(&'a str, &'a str)]) -> Self {
        Machine { input, pos: 0, op_at: 0, op: 0, allowed, arena: Vec::new(), stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() }
    }

    pub(super) fn run(mut self) -> Result<Value, PickleError> {
        while self.pos < self.input.len() {
            self.op_at = self.pos;
            self.op = self.input[self.pos];
            self.pos += 1;
            if self.op == b'.' {
                let root = self.pop()?;
                // Budgets scale with the input: a copy of shared objects may cost at most a few times
                // what the pickle itself spends on them.
                let (nodes, bytes) = (64 * self.input.len() + 65_536, 4 * self.input.len() + (1 << 20));
                let mut budget = Budget { nodes, bytes, node_limit: nodes, byte_limit: bytes };
                return to_value(&self.arena, root, 0, &mut budget);
            }
            self.step()?;
        }
        Err(PickleError::NoStop)
    }

    fn step(&mut self) -> Result<(), PickleError> {
        match self.op {
            0x80 => {
                let proto = self.take(1)?[0];
                if proto > 5 {
                    return Err(self.invalid(format!("protocol {proto}; this reader knows 2 to 5")));
                }
            }
            0x95 => {
                self.take(8)?; // FRAME: a length hint only
            }
            b'N' => self.push_leaf(Value::None),
            0x88 => self.push_leaf(Value::Bool(true)),
            0x89 => self.push_leaf(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.array::<4>()?);
                self.push_leaf(Value::Int(v as i64))
            }
            b'K' => {
                let v = self.take(1)?[0];
                self.push_leaf(Value::Int(v as i64))
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array::<2>()?);
                self.push_leaf(Value::Int(v as i64))
            }
            0x8a => {
                let n = self.take(1)?[0] as usize;
                self.long(n)?
            }
            0x8b => {
                let n = i32::from_le_bytes(self.array::<4>()?);
                let n = usize::try_from(n).map_err(|_| self.invalid(format!("negative length {n}")))?;
                self.long(n)?
            }
            b'G' => {
                let v = f64::from_be_bytes(self.array::<8>()?);
                self.push_leaf(Value::Float(v))
            }
            b'X' => self.string(4)?,
            0x8c => self.string(1)?,
            0x8d => self.string(8)?,
            b'T' | b'U' => {
                // Python 2 str: unpickled as text with Latin-1, which maps every byte.
                let n = if self.op == b'T' { self.len_prefix(4)? } else { self.len_prefix(1)? };
                let s: String = self.take(n)?.iter().map(|&b| b as char).collect();
                self.push_leaf(Value::Str(s))
            }
            b'B' => self.bytes(4)?,
            b'C' => self.bytes(1)?,
            0x8e | 0x96 => self.bytes(8)?,
            b')' => self.push(Node::Tuple(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.push(Node::Tuple(items))
            }
            0x85..=0x87 => {
                let n = (self.op - 0x84) as usize;
                let items = self.pop_n(n)?;
                self.push(Node::Tuple(items))
            }
            b']' => self.push(Node::List(Vec::new())),
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Node::List(items))
            }
            b'a' => {
                let v = self.pop()?;
                self.append(vec![v])?
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)?
            }
            b'}' => self.push(Node::Dict(Vec::new())),
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.push(Node::Dict(pairs))
            }
            b's' => {
                let items = self.pop_n(2)?;
                let pairs = self.pairs(items)?;
                self.set_items(pairs)?
            }
            b'u' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.set_items(pairs)?
            }
            0x8f => self.push(Node::Set(Vec::new())),
            0x90 => {
                let items = self.pop_mark()?;
                let top = self.top()?;
                match &mut self.arena[top] {
                    Node::Set(v) => v.extend(items),
                    _ => return Err(self.invalid("ADDITEMS target is not a set".into())),
                }
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Node::FrozenSet(items))
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.top()?;
                self.stack.push(top)
            }
            b'h' => {
                let k = self.take(1)?[0] as u64;
                self.get(k)?
            }
            b'j' => {
                let k = u32::from_le_bytes(self.array::<4>()?) as u64;
                self.get(k)?
            }
            b'g' => {
                let k = self.decimal_line()?;
                self.get(k)?
            }
            b'q' => {
                let k = self.take(1)?[0] as u64;
                self.put(k)?
            }
            b'r' => {
                let k = u32::from_le_bytes(self.array::<4>()?) as u64;
                self.put(k)?
            }
            b'p' => {
                let k = self.decimal_line()?;
                self.put(k)?
            }
            0x94 => {
                let k = self.memo.len() as u64;
                self.put(k)?
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(module, name)?
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(module), Some(name)) = (self.leaf_str(module), self.leaf_str(name)) else {
                    return Err(self.invalid("STACK_GLOBAL needs two strings".into()));
                };
                self.global(module, name)?
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let func = self.pop()?;
                self.reduce(func, args)?
            }
            0x92 => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let func = self.pop()?;
                let both = self.push_ix(Node::Tuple(vec![args, kwargs]));
                self.reduce(func, both)?
            }
            b'b' => {
                let state = self.pop()?;
                let obj = self.top()?;
                // Move the object aside and put the Build in its place, so every memo reference to
                // the object now sees the built one.
                let moved = std::mem::replace(&mut self.arena[obj], Node::Leaf(Value::None));
                let inner = self.push_ix(moved);
                self.arena[obj] = Node::Build { obj: inner, state };
            }
            b'P' => {
                let id = self.line()?;
                self.push_leaf(Value::Str(id));
                let id = self.pop()?;
                self.push(Node::PersistentId(id))
            }
            b'Q' => {
                let id = self.pop()?;
                self.push(Node::PersistentId(id))
            }
            _ => return Err(PickleError::UnknownOpcode { offset: self.op_at, opcode: self.op }),
        }
        Ok(())
    }

    fn invalid(&self, what: String) -> PickleError {
        PickleError::Invalid { offset: self.op_at, opcode: self.op, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.input.len());
        let Some(end) = end else {
            return Err(PickleError::Truncated { offset: self.op_at, opcode: self.op });
        };
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A little-endian unsigned length of `width` bytes; `take` then checks it against the input.
    fn len_prefix(&mut self, width: usize) -> Result<usize, PickleError> {
        let mut a = [0u8; 8];
        a[..width].copy_from_slice(self.take(width)?);
        let n = u64::from_le_bytes(a);
        usize::try_from(n).map_err(|_| PickleError::Truncated { offset: self.op_at, opcode: self.op })
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.input[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError::Truncated { offset: self.op_at, opcode: self.op });
        };
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| self.invalid("line is not UTF-8".into()))?.to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn decimal_line(&mut self) -> Result<u64, PickleError> {
        let line = self.line()?;
        line.trim().parse().map_err(|_| self.invalid(format!("memo key `{line}` is not a number")))
    }

    fn long(&mut self, n: usize) -> Result<(), PickleError> {
        let b = self.take(n)?;
        if n > 8 {
            return Err(self.invalid(format!("{n}-byte integer does not fit 64 bits")));
        }
        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
        let mut a = [fill; 8];
        a[..n].copy_from_slice(b);
        self.push_leaf(Value::Int(i64::from_le_bytes(a)));
        Ok(())
    }

    fn string(&mut self, width: usize) -> Result<(), PickleError> {
        let n = self.len_prefix(width)?;
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| self.invalid("string is not UTF-8".into()))?;
        self.push_leaf(Value::Str(s.to_string()));
        Ok(())
    }

    fn bytes(&mut self, width: usize) -> Result<(), PickleError> {
        let n = self.len_prefix(width)?;
        let b = self.take(n)?.to_vec();
        self.push_leaf(Value::Bytes(b));
        Ok(())
    }

    fn push_ix(&mut self, node: Node) -> Ix {
        self.arena.push(node);
        self.arena.len() - 1
    }

    fn push(&mut self, node: Node) {
        let ix = self.push_ix(node);
        self.stack.push(ix);
    }

    fn push_leaf(&mut self, v: Value) {
        self.push(Node::Leaf(v))
    }

    fn pop(&mut self) -> Result<Ix, PickleError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.invalid("pops past a MARK".into()));
        }
        self.stack.pop().ok_or_else(|| self.invalid("stack is empty".into()))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Ix>, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err(self.invalid(format!("needs {n} stack items")));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn top(&self) -> Result<Ix, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.invalid("stack is empty".into()));
        }
        Ok(self.stack[self.stack.len() - 1])
    }

    fn pop_mark(&mut self) -> Result<Vec<Ix>, PickleError> {
        let Some(m) = self.marks.pop() else {
            return Err(self.invalid("no MARK on the stack".into()));
        };
        Ok(self.stack.split_off(m))
    }

    fn pairs(&self, items: Vec<Ix>) -> Result<Vec<(Ix, Ix)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.invalid("odd number of items for key-value pairs".into()));
        }
        Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
    }

    fn append(&mut self, items: Vec<Ix>) -> Result<(), PickleError> {
        let top = self.top()?;
        match &mut self.arena[top] {
            Node::List(v) | Node::Reduce { appended: v, .. } => v.extend(items),
            _ => return Err(self.invalid("APPEND target is not a list".into())),
        }
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<(Ix, Ix)>) -> Result<(), PickleError> {
        let top = self.top()?;
        match &mut self.arena[top] {
            Node::Dict(d) | Node::Reduce { items: d, .. } => d.extend(pairs),
            _ => return Err(self.invalid("SETITEM target is not a dict".into())),
        }
        Ok(())
    }

    fn get(&mut self, k: u64) -> Result<(), PickleError> {
        let ix = *self.memo.get(&k).ok_or_else(|| self.invalid(format!("memo key {k} was never stored")))?;
        self.stack.push(ix);
        Ok(())
    }

    fn put(&mut self, k: u64) -> Result<(), PickleError> {
        let top = self.top()?;
        self.memo.insert(k, top);
        Ok(())
    }

    fn leaf_str(&self, ix: Ix) -> Option<String> {
        match &self.arena[ix] {
            Node::Leaf(Value::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    fn global(&mut self, module: String, name: String) -> Result<(), PickleError> {
        if !self.allowed.iter().any(|(m, n)| *m == module && *n == name) {
            return Err(PickleError::GlobalNotAllowed { offset: self.op_at, module, name });
        }
        self.push(Node::Global(module, name));
        Ok(())
    }

    fn reduce(&mut self, func: Ix, args: Ix) -> Result<(), PickleError> {
        let Node::Global(m, n) = &self.arena[func] else {
            return Err(self.invalid("the callable is not a global".into()));
        };
        let func = (m.clone(), n.clone());
        self.push(Node::Reduce { func, args, items: Vec::new(), appended: Vec::new() });
        Ok(())
    }
}

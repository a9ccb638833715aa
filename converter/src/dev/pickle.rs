//! A small pickle writer (protocol 2, the protocol `torch.save` uses) for the values a checkpoint holds:
//! plain containers, numbers and strings, global references, `REDUCE` calls with an optional `BUILD`
//! state, and persistent ids (torch's storage references).
//!
//! Like CPython's pickler it memoises every string, tuple, dict, list, global and reduce result with
//! `BINPUT` and refers to repeated globals with `BINGET`, so files look like the ones torch writes and
//! readers' memo handling is exercised.

use std::collections::HashMap;

/// A Python value to pickle.
#[derive(Clone, Debug, PartialEq)]
pub enum Py {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Py>),
    List(Vec<Py>),
    /// A `dict`, in insertion order.
    Dict(Vec<(Py, Py)>),
    /// A reference to `module.name` (a class or function).
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)`, then `SETITEMS` with `items` (how `OrderedDict` pickles its entries), then
    /// `BUILD` with `state` if present.
    Reduce {
        callable: Box<Py>,
        args: Vec<Py>,
        items: Vec<(Py, Py)>,
        state: Option<Box<Py>>,
    },
    /// A persistent id (`BINPERSID`): the loader resolves it, torch to a storage.
    PersistentId(Box<Py>),
}

impl Py {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Py {
        Py::Str(s.into())
    }
    /// A global reference `module.name`.
    pub fn global(module: &str, name: &str) -> Py {
        Py::Global { module: module.to_string(), name: name.to_string() }
    }
    /// An `OrderedDict` with the given entries and, when `attrs` is given, instance attributes set by
    /// `BUILD` (as `state_dict()` carries `_metadata`).
    pub fn ordered_dict(items: Vec<(Py, Py)>, attrs: Option<Py>) -> Py {
        Py::Reduce { callable: Box::new(Py::global("collections", "OrderedDict")), args: Vec::new(), items, state: attrs.map(Box::new) }
    }
}

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const BINUNICODE: u8 = b'X';
const BINBYTES: u8 = b'B';
const SHORT_BINBYTES: u8 = b'C';
const EMPTY_TUPLE: u8 = b')';
const TUPLE: u8 = b't';
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const EMPTY_LIST: u8 = b']';
const APPENDS: u8 = b'e';
const EMPTY_DICT: u8 = b'}';
const SETITEMS: u8 = b'u';
const GLOBAL: u8 = b'c';
const REDUCE: u8 = b'R';
const BUILD: u8 = b'b';
const BINPERSID: u8 = b'Q';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';

/// Pickles `value` with protocol 2.
pub fn to_pickle(value: &Py) -> Vec<u8> {
    let mut w = Writer { out: vec![PROTO, 2], memo_len: 0, globals: HashMap::new() };
    w.value(value);
    w.out.push(STOP);
    w.out
}

struct Writer {
    out: Vec<u8>,
    memo_len: u32,
    globals: HashMap<(String, String), u32>,
}

impl Writer {
    fn put(&mut self) -> u32 {
        let id = self.memo_len;
        self.memo_len += 1;
        match u8::try_from(id) {
            Ok(small) => self.out.extend_from_slice(&[BINPUT, small]),
            Err(_) => {
                self.out.push(LONG_BINPUT);
                self.out.extend_from_slice(&id.to_le_bytes());
            }
        }
        id
    }

    fn get(&mut self, id: u32) {
        match u8::try_from(id) {
            Ok(small) => self.out.extend_from_slice(&[BINGET, small]),
            Err(_) => {
                self.out.push(LONG_BINGET);
                self.out.extend_from_slice(&id.to_le_bytes());
            }
        }
    }

    fn int(&mut self, v: i64) {
        if (0..=0xff).contains(&v) {
            self.out.extend_from_slice(&[BININT1, v as u8]);
        } else if (0..=0xffff).contains(&v) {
            self.out.push(BININT2);
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if let Ok(v32) = i32::try_from(v) {
            self.out.push(BININT);
            self.out.extend_from_slice(&v32.to_le_bytes());
        } else {
            // LONG1: little-endian two's complement, here always 8 bytes (enough for an i64).
            self.out.extend_from_slice(&[LONG1, 8]);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn items(&mut self, items: &[(Py, Py)]) {
        if items.is_empty() {
            return;
        }
        self.out.push(MARK);
        for (k, v) in items {
            self.value(k);
            self.value(v);
        }
        self.out.push(SETITEMS);
    }

    fn value(&mut self, value: &Py) {
        match value {
            Py::None => self.out.push(NONE),
            Py::Bool(b) => self.out.push(if *b { NEWTRUE } else { NEWFALSE }),
            Py::Int(v) => self.int(*v),
            Py::Float(f) => {
                self.out.push(BINFLOAT);
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Py::Str(s) => {
                self.out.push(BINUNICODE);
                self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                self.out.extend_from_slice(s.as_bytes());
                self.put();
            }
            Py::Bytes(b) => {
                // Protocol 2 has no bytes opcode of its own; SHORT_BINBYTES/BINBYTES are protocol 3,
                // which every loader of interest (torch, numpy, our reader) understands.
                if let Ok(n) = u8::try_from(b.len()) {
                    self.out.extend_from_slice(&[SHORT_BINBYTES, n]);
                } else {
                    self.out.push(BINBYTES);
                    self.out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                }
                self.out.extend_from_slice(b);
                self.put();
            }
            Py::Tuple(items) => {
                match items.len() {
                    0 => {
                        self.out.push(EMPTY_TUPLE);
                        return;
                    }
                    1..=3 => {
                        for item in items {
                            self.value(item);
                        }
                        self.out.push([TUPLE1, TUPLE2, TUPLE3][items.len() - 1]);
                    }
                    _ => {
                        self.out.push(MARK);
                        for item in items {
                            self.value(item);
                        }
                        self.out.push(TUPLE);
                    }
                }
                self.put();
            }
            Py::List(items) => {
                self.out.push(EMPTY_LIST);
                self.put();
                if !items.is_empty() {
                    self.out.push(MARK);
                    for item in items {
                        self.value(item);
                    }
                    self.out.push(APPENDS);
                }
            }
            Py::Dict(items) => {
                self.out.push(EMPTY_DICT);
                self.put();
                self.items(items);
            }
            Py::Global { module, name } => {
                let key = (module.clone(), name.clone());
                if let Some(&id) = self.globals.get(&key) {
                    self.get(id);
                } else {
                    self.out.push(GLOBAL);
                    self.out.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
                    let id = self.put();
                    self.globals.insert(key, id);
                }
            }
            Py::Reduce { callable, args, items, state } => {
                self.value(callable);
                self.value(&Py::Tuple(args.clone()));
                self.out.push(REDUCE);
                self.put();
                self.items(items);
                if let Some(state) = state {
                    self.value(state);
                    self.out.push(BUILD);
                }
            }
            Py::PersistentId(pid) => {
                self.value(pid);
                self.out.push(BINPERSID);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_dict_matches_the_bytes_cpython_writes() {
        // pickle.dumps({'a': 1, 'b': (2, 3.5)}, protocol=2) from CPython 3.11.
        let value = Py::Dict(vec![(Py::str("a"), Py::Int(1)), (Py::str("b"), Py::Tuple(vec![Py::Int(2), Py::Float(3.5)]))]);
        let want: &[u8] =
            b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02K\x02G@\x0c\x00\x00\x00\x00\x00\x00\x86q\x03u.";
        assert_eq!(to_pickle(&value), want);
    }

    #[test]
    fn repeated_globals_are_fetched_from_the_memo() {
        let g = Py::global("torch", "FloatStorage");
        let bytes = to_pickle(&Py::List(vec![g.clone(), g]));
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.matches("FloatStorage").count(), 1);
        assert!(bytes.windows(2).any(|w| w == [BINGET, 1]));
    }

    #[test]
    fn integers_use_the_shortest_opcode() {
        for (v, op) in [(7i64, BININT1), (300, BININT2), (-1, BININT), (70_000, BININT), (1 << 40, LONG1)] {
            let bytes = to_pickle(&Py::Int(v));
            assert_eq!(bytes[2], op, "opcode for {v}");
        }
    }
}

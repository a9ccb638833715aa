//! The object tree a pickle evaluates to, and small accessors for consumers.

/// One unpickled object. Containers keep their order (a `Dict` is a list of pairs, as inserted).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    /// Integers up to 64 bits; wider ones are refused by the reader.
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    FrozenSet(Vec<Value>),
    /// A global that was not called (for example a class passed as an argument).
    Global {
        module: String,
        name: String,
    },
    /// `func(*args)` not evaluated (REDUCE, NEWOBJ). `items` and `appended` hold what SETITEM(S) and
    /// APPEND(S) later added to the result, as a dict subclass such as `OrderedDict` receives them.
    Reduce {
        func: (String, String),
        args: Box<Value>,
        items: Vec<(Value, Value)>,
        appended: Vec<Value>,
    },
    /// `obj.__setstate__(state)` not evaluated (BUILD).
    Build {
        obj: Box<Value>,
        state: Box<Value>,
    },
    /// A persistent id (PERSID / BINPERSID), such as torch's `('storage', type, key, location, numel)`.
    PersistentId(Box<Value>),
}

impl Value {
    /// The pairs of a `Dict`, or the items of a `Reduce` that built a dict subclass.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            Value::Reduce { items, .. } => Some(items),
            _ => None,
        }
    }

    /// The value for string key `key` in a dict (see `as_dict`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// A float, or an integer read as a float (Python mixes them freely in configs).
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Bytes, also in the protocol-2 spelling `_codecs.encode(text, 'latin1')` (each char one byte),
    /// which the caller must have allowed as a global. `None` if a char is above U+00FF.
    pub fn bytes_like(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        match self {
            Value::Bytes(b) => Some(std::borrow::Cow::Borrowed(b)),
            Value::Reduce { func, args, .. } if func.0 == "_codecs" && func.1 == "encode" => {
                let a = args.as_tuple()?;
                if a.len() != 2 || a[1].as_str() != Some("latin1") {
                    return None;
                }
                let text = a[0].as_str()?;
                text.chars().map(|c| u8::try_from(c as u32).ok()).collect::<Option<Vec<u8>>>().map(std::borrow::Cow::Owned)
            }
            _ => None,
        }
    }

    /// Elements of a tuple or a list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// `(module, name, args)` of a `Reduce`.
    pub fn as_reduce(&self) -> Option<(&str, &str, &Value)> {
        match self {
            Value::Reduce { func, args, .. } => Some((&func.0, &func.1, args)),
            _ => None,
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// A short name of the variant, for error messages ("expected a dict, found a list").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Global { .. } => "global",
            Value::Reduce { .. } => "reduce",
            Value::Build { .. } => "build",
            Value::PersistentId(_) => "persistent id",
        }
    }
}

//! [`Value`] and [`Dict`]: a bencoded value that borrows from its input where it can.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// One bencoded value. Byte strings borrow from the decoded input; built values may own them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// An integer (`i42e`). Bencode integers are unbounded; bt accepts the `i64` range.
    Int(i64),
    /// A byte string (`4:spam`); not necessarily UTF-8.
    Bytes(Cow<'a, [u8]>),
    /// A list (`l...e`).
    List(Vec<Value<'a>>),
    /// A dictionary (`d...e`).
    Dict(Dict<'a>),
}

impl<'a> Value<'a> {
    /// A byte-string value borrowing `bytes`.
    pub fn bytes(bytes: &'a [u8]) -> Self {
        Value::Bytes(Cow::Borrowed(bytes))
    }

    /// A byte-string value owning `bytes`.
    pub fn owned_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Value::Bytes(Cow::Owned(bytes.into()))
    }

    /// A byte-string value holding the UTF-8 of `text`.
    pub fn string(text: impl Into<String>) -> Self {
        Value::Bytes(Cow::Owned(text.into().into_bytes()))
    }

    /// The name of this value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "integer",
            Value::Bytes(_) => "byte string",
            Value::List(_) => "list",
            Value::Dict(_) => "dictionary",
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8 text, if this is a byte string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// A copy that borrows nothing from the input.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Int(n) => Value::Int(n),
            Value::Bytes(b) => Value::Bytes(Cow::Owned(b.into_owned())),
            Value::List(l) => Value::List(l.into_iter().map(Value::into_owned).collect()),
            Value::Dict(d) => Value::Dict(d.into_owned()),
        }
    }
}

impl From<i64> for Value<'_> {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl<'a> From<Dict<'a>> for Value<'a> {
    fn from(d: Dict<'a>) -> Self {
        Value::Dict(d)
    }
}

impl<'a> From<Vec<Value<'a>>> for Value<'a> {
    fn from(l: Vec<Value<'a>>) -> Self {
        Value::List(l)
    }
}

/// A dictionary: entries kept sorted by key (so encoding is canonical), plus, when decoded, the
/// exact bytes it was decoded from. Equality compares entries only.
#[derive(Clone, Debug, Default)]
pub struct Dict<'a> {
    entries: BTreeMap<Cow<'a, [u8]>, Value<'a>>,
    raw: Option<&'a [u8]>,
}

impl<'a> Dict<'a> {
    /// An empty dictionary.
    pub fn new() -> Self {
        Dict::default()
    }

    pub(crate) fn from_decoded(entries: BTreeMap<Cow<'a, [u8]>, Value<'a>>, raw: &'a [u8]) -> Self {
        Dict {
            entries,
            raw: Some(raw),
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries.get(key)
    }

    /// Inserts `value` under `key`, returning the value it replaces.
    pub fn insert(&mut self, key: impl Into<Cow<'a, [u8]>>, value: Value<'a>) -> Option<Value<'a>> {
        self.raw = None;
        self.entries.insert(key.into(), value)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The exact bytes this dictionary was decoded from (`d` through `e`), or `None` for a
    /// dictionary built or changed in memory.
    pub fn raw(&self) -> Option<&'a [u8]> {
        self.raw
    }

    /// A copy that borrows nothing from the input (and so forgets its raw bytes).
    pub fn into_owned(self) -> Dict<'static> {
        Dict {
            entries: self
                .entries
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
            raw: None,
        }
    }
}

impl PartialEq for Dict<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for Dict<'_> {}

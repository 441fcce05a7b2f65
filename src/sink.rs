//! Where a gateway-shaped value is written: a [`Value`] tree, or (in the
//! binding) the Lua stack itself, so that a reply need not be built twice.
//!
//! A [`Sink`] is driven like Lua's stack: a scalar, `map` or `list` pushes a
//! value; `field` and `item` pop the value on top into the map or list
//! below it. The shaping rules (`shape`) are written once against this
//! trait; [`ValueSink`] turns them into a `Value` for tests and for replies
//! that are still built as trees (watch events, txn), and the binding's
//! sink writes a Range or Put answer straight into Lua tables on the nginx
//! thread, from the typed response, with no tree and no int64 strings
//! allocated on either thread.

use base64::Engine as _;

use crate::shape::Value;

/// A writer of shaped values; see the module doc for the protocol.
pub trait Sink {
    /// Pushes bytes as a string.
    fn str(&mut self, b: &[u8]);
    /// Pushes an int64 as the gateway writes it: a decimal string.
    fn int(&mut self, n: i64);
    /// Pushes a uint64 as a decimal string.
    fn uint(&mut self, n: u64);
    /// Pushes a JSON number (only 32-bit fields such as an error's `code`).
    fn number(&mut self, n: i64);
    /// Pushes a boolean.
    fn boolean(&mut self, b: bool);
    /// Pushes an empty map expecting about `cap` fields.
    fn map(&mut self, cap: usize);
    /// Pushes an empty list of `cap` items.
    fn list(&mut self, cap: usize);
    /// Pops the value on top into the map below it, as `name`.
    fn field(&mut self, name: &'static str);
    /// Pops the value on top into the list below it, at index `i` (from 0).
    fn item(&mut self, i: usize);

    /// An int64 field, absent when zero.
    fn int_field(&mut self, name: &'static str, n: i64) {
        if n != 0 {
            self.int(n);
            self.field(name);
        }
    }

    /// A uint64 field, absent when zero.
    fn uint_field(&mut self, name: &'static str, n: u64) {
        if n != 0 {
            self.uint(n);
            self.field(name);
        }
    }

    /// `true`, or absent.
    fn flag_field(&mut self, name: &'static str, b: bool) {
        if b {
            self.boolean(true);
            self.field(name);
        }
    }

    /// Raw bytes, always present.
    fn str_field(&mut self, name: &'static str, b: &[u8]) {
        self.str(b);
        self.field(name);
    }

    /// Standard padded base64, absent when empty.
    fn b64_field(&mut self, name: &'static str, b: &[u8]) {
        if !b.is_empty() {
            let text = base64::engine::general_purpose::STANDARD.encode(b);
            self.str(text.as_bytes());
            self.field(name);
        }
    }
}

/// `n` (negated when `negative`) in decimal, written backwards into `buf`:
/// no allocation and none of core::fmt's machinery, which costs a few
/// hundred instructions per number (a get's reply formats eight).
pub fn decimal(buf: &mut [u8; 21], negative: bool, mut n: u64) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// Builds a [`Value`] tree.
#[derive(Default)]
pub struct ValueSink {
    stack: Vec<Value>,
}

impl ValueSink {
    /// The value `write` produces.
    pub fn build(write: impl FnOnce(&mut ValueSink)) -> Value {
        let mut s = ValueSink::default();
        write(&mut s);
        s.stack.pop().unwrap_or(Value::Map(Vec::new()))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Value {
        self.stack.pop().unwrap_or(Value::Map(Vec::new()))
    }
}

impl Sink for ValueSink {
    fn str(&mut self, b: &[u8]) {
        self.push(Value::Str(b.to_vec()));
    }
    fn int(&mut self, n: i64) {
        self.push(Value::Str(n.to_string().into_bytes()));
    }
    fn uint(&mut self, n: u64) {
        self.push(Value::Str(n.to_string().into_bytes()));
    }
    fn number(&mut self, n: i64) {
        self.push(Value::Int(n));
    }
    fn boolean(&mut self, b: bool) {
        self.push(Value::Bool(b));
    }
    fn map(&mut self, cap: usize) {
        self.push(Value::Map(Vec::with_capacity(cap)));
    }
    fn list(&mut self, cap: usize) {
        self.push(Value::List(Vec::with_capacity(cap)));
    }
    fn field(&mut self, name: &'static str) {
        let v = self.pop();
        // A field always goes into the map pushed before it (the shaping
        // functions pair them); anything else is dropped, not a panic.
        if let Some(Value::Map(members)) = self.stack.last_mut() {
            members.push((name, v));
        }
    }
    fn item(&mut self, _i: usize) {
        let v = self.pop();
        if let Some(Value::List(items)) = self.stack.last_mut() {
            items.push(v);
        }
    }
}

impl Value {
    /// Writes this tree to `s`.
    pub fn write(&self, s: &mut impl Sink) {
        match self {
            Value::Bool(b) => s.boolean(*b),
            Value::Int(n) => s.number(*n),
            Value::Str(b) => s.str(b),
            Value::List(items) => {
                s.list(items.len());
                for (i, v) in items.iter().enumerate() {
                    v.write(s);
                    s.item(i);
                }
            }
            Value::Map(members) => {
                s.map(members.len());
                for (k, v) in members {
                    v.write(s);
                    s.field(k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_written_to_a_value_sink_is_itself() {
        let v = Value::Map(vec![
            ("a", Value::Str(b"x".to_vec())),
            (
                "b",
                Value::List(vec![Value::Int(3), Value::Bool(true), Value::Map(vec![])]),
            ),
        ]);
        assert_eq!(ValueSink::build(|s| v.write(s)), v);
    }

    #[test]
    fn decimals_without_fmt() {
        let mut buf = [0u8; 21];
        let text = |buf: &mut [u8; 21], n: i64| {
            String::from_utf8(decimal(buf, n < 0, n.unsigned_abs()).to_vec()).unwrap()
        };
        for n in [0, 7, -7, 10, 1_234_567, i64::MAX, i64::MIN] {
            assert_eq!(text(&mut buf, n), n.to_string());
        }
        assert_eq!(
            decimal(&mut buf, false, u64::MAX),
            u64::MAX.to_string().as_bytes()
        );
    }

    #[test]
    fn absent_fields_are_left_out() {
        let v = ValueSink::build(|s| {
            s.map(4);
            s.int_field("zero", 0);
            s.int_field("n", -5);
            s.uint_field("u", 0);
            s.flag_field("f", false);
            s.b64_field("e", b"");
            s.b64_field("b", b"hi");
        });
        assert_eq!(v.to_json(), r#"{"n":"-5","b":"aGk="}"#);
    }
}

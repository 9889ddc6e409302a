//! What every storage can hold: text without NUL characters, and arguments nested no
//! deeper than every decoder reads back.

use std::borrow::Cow;

use serde_json::Value;

/// The deepest nesting of arrays and objects accepted in a job's arguments (the
/// arguments object itself is level 1). `serde_json` refuses to read more than 128
/// levels, so deeper arguments could be stored but never run.
pub const MAX_ARGS_DEPTH: usize = 100;

/// `text` as every storage keeps it: each NUL character replaced by U+FFFD.
///
/// PostgreSQL cannot store NUL in `text` or `jsonb`; the other backends replace it
/// too, so a handler's message reads the same wherever it is stored.
///
/// ```
/// assert_eq!(haul_core::storable_text("a\0b"), "a\u{FFFD}b");
/// assert!(matches!(haul_core::storable_text("plain"), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn storable_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') { Cow::Owned(text.replace('\0', "\u{FFFD}")) } else { Cow::Borrowed(text) }
}

/// What is wrong with a job's arguments, if anything.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ArgsProblem {
    /// Nested deeper than the limit.
    TooDeep,
    /// A string (or an object key) holds a NUL character.
    Nul,
}

/// Walks `value` without recursion, stopping at the first problem: nesting deeper than
/// `limit` levels (the arguments object itself is level 1), or a NUL character in a
/// string or key.
pub(crate) fn args_problem(value: &Value, limit: usize) -> Option<ArgsProblem> {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::String(text) if text.contains('\0') => return Some(ArgsProblem::Nul),
            Value::Array(_) | Value::Object(_) if depth > limit => return Some(ArgsProblem::TooDeep),
            Value::Array(items) => stack.extend(items.iter().map(|child| (child, depth + 1))),
            Value::Object(fields) => {
                if fields.keys().any(|key| key.contains('\0')) {
                    return Some(ArgsProblem::Nul);
                }
                stack.extend(fields.values().map(|child| (child, depth + 1)));
            }
            _ => {}
        }
    }
    None
}

/// Refuses arguments nested deeper than [`MAX_ARGS_DEPTH`] or holding a NUL character.
pub(crate) fn check_args(kind: &str, args: &Value) -> Result<(), crate::Error> {
    match args_problem(args, MAX_ARGS_DEPTH) {
        None => Ok(()),
        Some(ArgsProblem::TooDeep) => Err(too_deep(kind)),
        Some(ArgsProblem::Nul) => Err(crate::Error::InvalidArgument(
            format!(
                "job kind `{kind}` has a NUL character (\\u0000) in its arguments, which not every storage can \
                 hold; encode binary data, e.g. as base64"
            )
            .into(),
        )),
    }
}

/// The refusal of arguments nested deeper than [`MAX_ARGS_DEPTH`].
pub(crate) fn too_deep(kind: &str) -> crate::Error {
    crate::Error::InvalidArgument(
        format!(
            "job kind `{kind}` has arguments nested more than {MAX_ARGS_DEPTH} levels deep, more than a stored job \
             can be read back with; flatten them"
        )
        .into(),
    )
}

/// Why [`to_json_within_depth`] failed.
#[derive(Debug)]
pub(crate) enum EncodeError {
    /// Nested deeper than the limit: serialization stopped there.
    TooDeep,
    /// The value's `Serialize` implementation failed.
    Serde(serde_json::Error),
}

/// Serializes `value` to JSON, stopping with [`EncodeError::TooDeep`] as soon as it
/// nests more than `limit` arrays and objects: the value's own serialization recursion
/// ends there, so even a value nested millions of levels deep cannot overflow the stack.
pub(crate) fn to_json_within_depth<T: serde::Serialize + ?Sized>(
    value: &T,
    limit: usize,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(128);
    let exceeded = std::cell::Cell::new(false);
    let formatter = DepthLimit { depth: 0, limit, exceeded: &exceeded };
    let result = value.serialize(&mut serializer(&mut out, formatter));
    match result {
        Ok(()) => Ok(out),
        Err(_) if exceeded.get() => Err(EncodeError::TooDeep),
        Err(error) => Err(EncodeError::Serde(error)),
    }
}

fn serializer<'w, 'f>(
    out: &'w mut Vec<u8>,
    formatter: DepthLimit<'f>,
) -> serde_json::Serializer<&'w mut Vec<u8>, DepthLimit<'f>> {
    serde_json::Serializer::with_formatter(out, formatter)
}

/// serde_json's compact output, refusing to open a container past `limit`.
struct DepthLimit<'a> {
    depth: usize,
    limit: usize,
    exceeded: &'a std::cell::Cell<bool>,
}

impl DepthLimit<'_> {
    fn open<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        if self.depth > self.limit {
            self.exceeded.set(true);
            return Err(std::io::Error::other("nested too deep"));
        }
        writer.write_all(bracket)
    }
}

impl serde_json::ser::Formatter for DepthLimit<'_> {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.open(writer, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        writer.write_all(b"]")
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.open(writer, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        writer.write_all(b"}")
    }
}

/// Drops `value` without recursion, so arguments nested thousands of levels deep
/// (refused, but built by the caller) do not overflow the stack when they go away.
pub(crate) fn drop_without_recursion(value: Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(fields) => stack.extend(fields.into_iter().map(|(_, child)| child)),
            _ => {}
        }
    }
}

/// The length of `value` serialized as JSON (as `serde_json::to_vec` writes it), without
/// building the string.
///
/// ```
/// let args = serde_json::json!({ "to": "ada@example.com", "tries": [1, 2] });
/// assert_eq!(haul_core::json_len(&args), serde_json::to_vec(&args).map(|json| json.len()).unwrap_or(0));
/// ```
pub fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` into a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(levels: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..levels {
            let mut object = serde_json::Map::new();
            object.insert("inner".to_owned(), value);
            value = Value::Object(object);
        }
        value
    }

    #[test]
    fn depth_counts_containers_and_stops_past_the_limit() {
        assert_eq!(args_problem(&json!({ "a": [1, [2]], "b": {} }), 3), None);
        assert_eq!(args_problem(&json!({ "a": [1, [2]], "b": {} }), 2), Some(ArgsProblem::TooDeep));
        assert_eq!(args_problem(&nested(100), 100), None);
        assert_eq!(args_problem(&nested(101), 100), Some(ArgsProblem::TooDeep));
        let deep = nested(50_000);
        assert_eq!(args_problem(&deep, 100), Some(ArgsProblem::TooDeep));
        drop_without_recursion(deep);
    }

    #[test]
    fn a_nul_in_a_string_or_key_is_a_problem() {
        assert_eq!(args_problem(&json!({ "a": ["x\u{0}y"] }), 10), Some(ArgsProblem::Nul));
        assert_eq!(args_problem(&json!({ "a\u{0}": 1 }), 10), Some(ArgsProblem::Nul));
        assert_eq!(args_problem(&json!({ "a": "\u{FFFD}" }), 10), None);
    }

    #[test]
    fn encoding_stops_at_the_depth_limit_without_overflowing() {
        let deep = nested(100_000);
        assert!(matches!(to_json_within_depth(&deep, 100), Err(EncodeError::TooDeep)));
        drop_without_recursion(deep);
        let fits = nested(100);
        let bytes = to_json_within_depth(&fits, 100).map_err(|_| ()).expect("100 levels fit");
        assert_eq!(serde_json::from_slice::<Value>(&bytes).ok(), Some(fits));
    }

    #[test]
    fn nul_characters_become_replacement_characters() {
        assert_eq!(storable_text("\0x\0"), "\u{FFFD}x\u{FFFD}");
    }
}

//! Why a query or a sort order was refused. Every message names what is wrong, where (byte
//! offset in the text the user typed), and what would be accepted instead: a query is never
//! half-applied with the bad part silently dropped.

use super::fields::{FieldKind, fields};

/// A query or sort order that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A field name the language does not have.
    #[error(
        "unknown field `{field}` at position {pos}{}; valid fields: {}",
        did_you_mean(*.suggestion),
        field_names()
    )]
    UnknownField {
        /// What was written.
        field: String,
        /// Byte offset of the name.
        pos: usize,
        /// The closest valid name, if one is close.
        suggestion: Option<&'static str>,
    },
    /// An operator the field's kind does not support, e.g. `gpu_name>5`.
    #[error(
        "`{clause}` at position {pos}: field `{field}` is {} and takes only {}, not `{op}`",
        kind_phrase(*.kind),
        .kind.allowed_ops()
    )]
    BadOperator {
        /// The field.
        field: &'static str,
        /// The operator written.
        op: String,
        /// The field's kind.
        kind: FieldKind,
        /// The clause as written.
        clause: String,
        /// Byte offset of the clause.
        pos: usize,
    },
    /// A value that is not of the field's kind, e.g. `num_gpus>=two`.
    #[error(
        "`{clause}` at position {pos}: `{value}` is not a value for `{field}`; expected {expected}"
    )]
    BadValue {
        /// The field.
        field: &'static str,
        /// The value written.
        value: String,
        /// What the field takes.
        expected: &'static str,
        /// The clause as written.
        clause: String,
        /// Byte offset of the value.
        pos: usize,
    },
    /// An `in`/`notin` list that is not `[A,B,...]`.
    #[error(
        "`{clause}` at position {pos}: {why}; write a list as [A,B,...], e.g. geolocation in [DE,NL]"
    )]
    MalformedList {
        /// What is wrong with it.
        why: String,
        /// The clause as written.
        clause: String,
        /// Byte offset of the problem.
        pos: usize,
    },
    /// A clause that stops early or a token where none fits (trailing garbage).
    #[error("at position {pos}: expected {expected}, found {found}")]
    Unexpected {
        /// What would have fitted.
        expected: &'static str,
        /// What was there (`end of query` at the end).
        found: String,
        /// Byte offset.
        pos: usize,
    },
    /// A quoted string without its closing quote.
    #[error("at position {pos}: quoted string is not closed; add the closing {quote}")]
    UnclosedQuote {
        /// The quote character.
        quote: char,
        /// Byte offset of the opening quote.
        pos: usize,
    },
    /// A sort key naming no field.
    #[error(
        "unknown sort field `{field}` at position {pos}{}; sort by score or one of: {}",
        did_you_mean(*.suggestion),
        field_names()
    )]
    UnknownSortField {
        /// What was written.
        field: String,
        /// Byte offset of the name.
        pos: usize,
        /// The closest valid name, if one is close.
        suggestion: Option<&'static str>,
    },
    /// A sort order with no keys, an empty key or a bad direction.
    #[error("sort order `{text}`: {why}; write keys such as `dph+` or `num_gpus-,dph+`")]
    BadSort {
        /// The sort text.
        text: String,
        /// What is wrong.
        why: String,
    },
}

fn kind_phrase(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Number => "a number",
        FieldKind::Version => "a version",
        FieldKind::Text => "text",
        FieldKind::Bool => "a bool",
    }
}

fn did_you_mean(s: Option<&'static str>) -> String {
    s.map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

fn field_names() -> String {
    fields()
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The valid name closest to `name`: edit distance at most 2 (3 for long names), or one name
/// containing the other (`cuda_version` → `cuda_vers`).
pub(crate) fn suggest(name: &str, extra: &[&'static str]) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let candidates = fields().iter().map(|f| f.name).chain(extra.iter().copied());
    candidates
        .map(|c| (edit_distance(&lower, c), c))
        .filter(|(d, c)| {
            *d <= if c.len() > 8 { 3 } else { 2 }
                || (lower.len() >= 3 && (c.contains(lower.as_str()) || lower.contains(c)))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_close_names() {
        assert_eq!(suggest("gpu_nam", &[]), Some("gpu_name"));
        assert_eq!(suggest("GPU_NAME", &[]), Some("gpu_name"));
        assert_eq!(suggest("cuda_version", &[]), Some("cuda_vers"));
        assert_eq!(suggest("numgpus", &[]), Some("num_gpus"));
        assert_eq!(suggest("scor", &["score"]), Some("score"));
        assert_eq!(suggest("zzzzzz", &[]), None);
    }
}

//! A strict reader of the Prometheus text format (0.0.4), enough to check `/metrics`: every
//! line is a `# HELP`, a `# TYPE` or a sample of a family whose `# TYPE` came first, metric
//! and label names are valid, label values are quoted, values are numbers, no series repeats.

use std::collections::{BTreeMap, BTreeSet};

/// `(name, labels as written) → value as written`. Panics on anything malformed.
pub(super) fn parse(text: &str) -> BTreeMap<(String, String), String> {
    let mut typed = BTreeSet::new();
    let mut series = BTreeMap::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(_)) => assert!(valid_name(name), "{line}"),
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(valid_name(name), "{line}");
                    assert!(
                        ["gauge", "counter", "histogram", "summary", "untyped"].contains(&kind),
                        "{line}"
                    );
                    assert!(typed.insert(name.to_owned()), "TYPE twice: {line}");
                }
                _ => panic!("bad comment line {line:?}"),
            }
            continue;
        }
        let (series_part, value) = line.rsplit_once(' ').expect("sample has a value");
        let (name, labels) = match series_part.split_once('{') {
            Some((name, rest)) => {
                let labels = rest.strip_suffix('}').expect("labels end with }");
                check_labels(labels, line);
                (name, labels)
            }
            None => (series_part, ""),
        };
        assert!(valid_name(name), "{line}");
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        assert!(value.parse::<f64>().is_ok(), "value of {line}");
        let fresh = series
            .insert((name.to_owned(), labels.to_owned()), value.to_owned())
            .is_none();
        assert!(fresh, "series twice: {line}");
    }
    series
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes in values.
fn check_labels(labels: &str, line: &str) {
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label has =\"");
        assert!(valid_name(key) && !key.starts_with("__"), "{line}");
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    let esc = chars.next().map(|(_, c)| c);
                    assert!(matches!(esc, Some('\\' | '"' | 'n')), "{line}");
                }
                Some((i, '"')) => break i,
                Some(_) => {}
                None => panic!("unterminated label value: {line}"),
            }
        };
        rest = &after[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else {
            assert!(rest.is_empty(), "{line}");
        }
    }
}

#[test]
fn api_prom_reader_rejects_malformed_text() {
    let ok = "# HELP a_b x\n# TYPE a_b gauge\na_b{k=\"v\\\"\"} 1\na_b 2\n";
    assert_eq!(parse(ok).len(), 2);
    for bad in [
        "a 1\n",                        // no TYPE
        "# TYPE a gauge\na{k=v} 1\n",   // unquoted
        "# TYPE a gauge\na 1\na 2\n",   // repeated series
        "# TYPE a gauge\na x\n",        // not a number
        "# TYPE 1a gauge\n",            // bad name
        "# TYPE a gauge\na{k=\"v} 1\n", // unterminated
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "{bad:?}");
    }
}

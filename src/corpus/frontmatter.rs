//! The front matter of a corpus file: a small YAML subset between two `---` lines.
//!
//! Accepted lines are `key: value` (the value bare or as a JSON-style double-quoted
//! string) and, after a `key:` with no value, list items written as `  - value`.
//! The writer always quotes strings, so titles with colons or quotes round-trip.

use std::collections::BTreeMap;

/// One front-matter value: a scalar or a list of scalars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Scalar(String),
    List(Vec<String>),
}

/// A parsed field with the 1-based line it starts on, for warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub value: FieldValue,
    pub line: usize,
}

/// Parsed front matter and the body that follows it.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub fields: BTreeMap<String, Field>,
    pub body: &'a str,
}

/// A front-matter syntax error with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

fn syntax_error(line: usize, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        line,
        message: message.into(),
    }
}

/// Splits `text` into front-matter fields and the body.
pub fn parse(text: &str) -> Result<Parsed<'_>, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != "---" {
        return Err(syntax_error(
            1,
            "missing front matter: the file must start with a `---` line",
        ));
    }
    let mut offset = first.len();
    let mut fields: BTreeMap<String, Field> = BTreeMap::new();
    let mut open_list: Option<String> = None;
    let mut line_number = 1;
    for raw in lines {
        line_number += 1;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        if line.trim_end() == "---" {
            return Ok(Parsed {
                fields,
                body: text[offset..].trim(),
            });
        }
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(item) = line
            .trim_start()
            .strip_prefix("- ")
            .or_else(|| (line.trim_start() == "-").then_some(""))
        {
            let Some(key) = &open_list else {
                return Err(syntax_error(line_number, "list item outside a list field"));
            };
            let value = parse_scalar(item.trim(), line_number)?;
            if let Some(Field {
                value: FieldValue::List(items),
                ..
            }) = fields.get_mut(key)
            {
                items.push(value);
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            return Err(syntax_error(line_number, "unexpected indented line"));
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(syntax_error(
                line_number,
                format!("expected `key: value`, found {line:?}"),
            ));
        };
        let key = key.trim().to_string();
        if key.is_empty() {
            return Err(syntax_error(line_number, "empty key"));
        }
        if fields.contains_key(&key) {
            return Err(syntax_error(line_number, format!("duplicate key `{key}`")));
        }
        let value = value.trim();
        let value = if value.is_empty() {
            open_list = Some(key.clone());
            FieldValue::List(Vec::new())
        } else if value.starts_with('[') {
            open_list = None;
            let items: Vec<String> = serde_json::from_str(value).map_err(|error| {
                syntax_error(
                    line_number,
                    format!("invalid inline list for `{key}`: {error}"),
                )
            })?;
            FieldValue::List(items)
        } else {
            open_list = None;
            FieldValue::Scalar(parse_scalar(value, line_number)?)
        };
        fields.insert(
            key,
            Field {
                value,
                line: line_number,
            },
        );
    }
    Err(syntax_error(
        1,
        "front matter is not closed by a `---` line",
    ))
}

fn parse_scalar(value: &str, line: usize) -> Result<String, SyntaxError> {
    if value.starts_with('"') {
        serde_json::from_str::<String>(value)
            .map_err(|error| syntax_error(line, format!("invalid quoted string: {error}")))
    } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Ok(inner.replace("''", "'"))
    } else {
        Ok(value.to_string())
    }
}

/// Quotes a string the way [`parse`] reads it back.
pub fn quote(value: &str) -> String {
    serde_json::to_string(value).expect("serializing a string cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_scalars_lists_and_body() {
        let text = "---\nid: a-1\ntitle: \"x: \\\"y\\\"\"\nscenarios:\n  - \"one\"\n  - two\n---\n\nbody line\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.fields["id"].value, FieldValue::Scalar("a-1".into()));
        assert_eq!(
            parsed.fields["title"].value,
            FieldValue::Scalar("x: \"y\"".into())
        );
        assert_eq!(
            parsed.fields["scenarios"].value,
            FieldValue::List(vec!["one".into(), "two".into()])
        );
        assert_eq!(parsed.fields["scenarios"].line, 4);
        assert_eq!(parsed.body, "body line");
    }

    #[test]
    fn parse_rejects_missing_and_unclosed() {
        assert_eq!(parse("id: x\n").unwrap_err().line, 1);
        assert!(parse("---\nid: x\n").is_err());
        assert_eq!(parse("---\nid: x\nid: y\n---\n").unwrap_err().line, 3);
        assert_eq!(parse("---\nno colon here\n---\n").unwrap_err().line, 2);
        assert_eq!(parse("---\ntitle: \"open\n---\n").unwrap_err().line, 2);
    }

    #[test]
    fn quote_round_trips() {
        for value in ["plain", "a: b", "\"quoted\"", "中文：标题", "back\\slash"] {
            let text = format!("---\nt: {}\n---\n", quote(value));
            let parsed = parse(&text).unwrap();
            assert_eq!(parsed.fields["t"].value, FieldValue::Scalar(value.into()));
        }
    }
}

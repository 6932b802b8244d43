//! From YAML text to a `Study`, with positions in every error.

use std::path::Path;

use super::error::{Problem, StudyError};
use super::locate::{Location, LocationIndex};
use super::schema::Study;

/// Parse a study's text. `file` is only used in messages.
pub fn parse(file: &Path, text: &str) -> Result<(Study, LocationIndex), StudyError> {
    match parse_all(text) {
        (Some(study), index, problems) if problems.is_empty() => Ok((study, index)),
        (_, _, problems) => Err(StudyError { file: file.to_path_buf(), problems }),
    }
}

/// How many schema problems one study's parse reports at most.
const MAX_SCHEMA_PROBLEMS: usize = 50;

/// Parse a study's text, finding every schema problem (unknown keys, wrong types) and not only
/// the first: each offending key is taken out and the rest parsed again. Returns the study
/// without those keys (their defaults in their place) when it still parses, so that its values
/// can be checked too; None after a syntax error or the loss of a required key.
pub fn parse_all(text: &str) -> (Option<Study>, LocationIndex, Vec<Problem>) {
    let index = LocationIndex::build(text);
    let de = serde_yaml::Deserializer::from_str(text);
    let first = match serde_path_to_error::deserialize::<_, Study>(de) {
        Ok(study) => return (Some(study), index, Vec::new()),
        Err(err) => {
            let path = err.path().to_string();
            describe(&path, &err.into_inner(), &index)
        }
    };
    let mut problems = vec![first];
    // A syntax error, or a document that is not one YAML value: nothing more can be read.
    let Ok(mut doc) = serde_yaml::from_str::<serde_yaml::Value>(text) else { return (None, index, problems) };
    while problems.len() < MAX_SCHEMA_PROBLEMS {
        let last = problems.last().expect("one at least");
        if last.field.is_empty() || !remove_field(&mut doc, &last.field) {
            return (None, index, problems);
        }
        match serde_path_to_error::deserialize::<_, Study>(doc.clone()) {
            Ok(study) => return (Some(study), index, problems),
            Err(err) => {
                let path = err.path().to_string();
                let p = describe(&path, &err.into_inner(), &index);
                // A required key taken out above: reported already, as what it held.
                if p.message.starts_with("missing field") {
                    return (None, index, problems);
                }
                problems.push(p);
            }
        }
    }
    (None, index, problems)
}

/// Takes the key a problem's field names out of a parsed document (`a.b`, `a.list[2].c`).
/// A field that is an element of a list takes the list's key out with it. Returns whether
/// anything was removed.
fn remove_field(doc: &mut serde_yaml::Value, field: &str) -> bool {
    // Segments: keys, and list indices as numbers.
    let mut segs: Vec<Result<String, usize>> = Vec::new();
    for part in field.split('.') {
        let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            segs.push(Ok(key.to_string()));
        }
        for idx in rest.split('[') {
            if let Some(n) = idx.strip_suffix(']').and_then(|n| n.parse().ok()) {
                segs.push(Err(n));
            }
        }
    }
    // An element of a list of values: the list goes.
    while matches!(segs.last(), Some(Err(_))) {
        segs.pop();
    }
    let Some(Ok(last)) = segs.pop() else { return false };
    let mut node = doc;
    for seg in &segs {
        node = match (seg, node) {
            (Ok(k), serde_yaml::Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Err(i), serde_yaml::Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match node {
        serde_yaml::Value::Mapping(m) => m.remove(last.as_str()).is_some(),
        _ => false,
    }
}

/// Turn a serde_yaml error into a problem with a position, a field and a hint.
fn describe(path: &str, err: &serde_yaml::Error, index: &LocationIndex) -> Problem {
    // A syntax error has no meaningful field (serde_path_to_error shows `?` for keys it never read).
    let syntax = path.contains('?') || err.to_string().starts_with("did not find") || err.to_string().contains("while parsing");
    let field = if path == "." || syntax { String::new() } else { path.to_string() };
    // serde_yaml appends " at line L column C" to its message; the position goes in front.
    let raw = err.to_string();
    let mut message = match raw.find(" at line ") {
        Some(cut) => raw[..cut].to_string(),
        None => raw.clone(),
    };
    // serde_yaml also puts its own path in front ("search: unknown field ..."); the field is
    // reported separately, so keep the message from serde's own wording on.
    if let Some(prefix) = message.find(": ").map(|i| &message[..i]) {
        if !prefix.contains(' ') && !prefix.is_empty() {
            message = message[prefix.len() + 2..].to_string();
        }
    }
    let mut location = err.location().map(|l| Location { line: l.line(), column: l.column() });

    if let Some((unknown, expected)) = parse_unknown_field(&message) {
        // serde_path_to_error's path usually ends with the unknown key already.
        let key_path = if field.is_empty() {
            unknown.clone()
        } else if field == unknown || field.ends_with(&format!(".{unknown}")) {
            field.clone()
        } else {
            format!("{field}.{unknown}")
        };
        location = index.key(&key_path).or(location);
        let hint = match suggest(&unknown, &expected) {
            Some(s) => Some(format!("did you mean `{s}`?")),
            None if expected.is_empty() => None,
            None => Some(format!("known fields here: {}", expected.join(", "))),
        };
        return Problem { location, field: key_path, message: format!("unknown field `{unknown}`"), hint };
    }
    if let Some((value, expected)) = parse_unknown_variant(&message) {
        location = index.value(&field).or(location);
        let hint = match suggest(&value, &expected) {
            Some(s) => Some(format!("did you mean `{s}`?")),
            None => Some(format!("choose one of: {}", expected.join(", "))),
        };
        return Problem { location, field, message: format!("unknown value `{value}`"), hint };
    }
    if let Some(key) = message.strip_prefix("duplicate field `").and_then(|r| r.strip_suffix('`')) {
        // serde_yaml points at the mapping (1:1 for the document); the second key is the news.
        let key_path = if field.is_empty() || field == key || field.ends_with(&format!(".{key}")) {
            if field.is_empty() { key.to_string() } else { field.clone() }
        } else {
            format!("{field}.{key}")
        };
        location = index.repeated_key(&key_path).or(location);
        let first = index.key(&key_path).map(|l| format!("; it is first set at line {}", l.line)).unwrap_or_default();
        return Problem { location, field: key_path, message: format!("`{key}` is set twice{first}"), hint: Some("keep one of them".into()) };
    }
    if message.starts_with("missing field") {
        location = location.or_else(|| index.value(&field));
        return Problem { location, field, message, hint: None };
    }
    if location.is_none() {
        location = index.value(&field);
    }
    if syntax {
        return Problem { location, field, message: format!("YAML syntax error: {message}"), hint: None };
    }
    Problem { location, field, message: plain_types(&message), hint: None }
}

/// Rust type names are not what a study's author thinks in.
fn plain_types(msg: &str) -> String {
    let msg = msg
        .replace("expected f64", "expected a number")
        .replace("expected usize", "expected a whole number, 0 or more")
        .replace("expected u64", "expected a whole number, 0 or more")
        .replace("expected a boolean", "expected true or false")
        .replace("invalid type: unit value", "invalid type: an empty value");
    // "expected struct FinetuneRecipe": the Rust type's name says nothing to a study's author.
    match msg.find("expected struct ") {
        Some(i) => format!("{}expected a map of settings{}", &msg[..i], msg[i + "expected struct ".len()..].trim_start_matches(|c: char| c.is_alphanumeric() || c == '_')),
        None => msg,
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`", or "there are no fields").
fn parse_unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    Some((rest[..end].to_string(), backticked(&rest[end + 1..])))
}

fn parse_unknown_variant(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown variant `")?;
    let end = rest.find('`')?;
    Some((rest[..end].to_string(), backticked(&rest[end + 1..])))
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// The closest known name, if it is close enough to be a typo.
pub fn suggest(input: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(input, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(text: &str) -> StudyError {
        parse(Path::new("s.yaml"), text).unwrap_err()
    }

    #[test]
    fn unknown_key_points_at_the_key_and_suggests() {
        let e = err_of("name: x\ndataset: { kind: fashion-mnist }\nsearch:\n  llrdd: [0.7]\n");
        let p = &e.problems[0];
        assert_eq!(p.field, "search.llrdd");
        assert_eq!(p.location, Some(Location { line: 4, column: 3 }));
        assert_eq!(p.hint.as_deref(), Some("did you mean `llrd`?"));
    }

    #[test]
    fn wrong_type_names_field_and_position() {
        let e = err_of("name: x\ndataset: { kind: fashion-mnist }\nfinetune:\n  epochs: many\n");
        let p = &e.problems[0];
        assert_eq!(p.field, "finetune.epochs");
        assert_eq!(p.location.unwrap().line, 4);
        assert!(p.message.contains("many"), "{}", p.message);
    }

    #[test]
    fn unknown_dataset_kind_suggests() {
        let e = err_of("name: x\ndataset: { kind: fashion_mnist }\n");
        let p = &e.problems[0];
        assert_eq!(p.field, "dataset.kind");
        assert_eq!(p.hint.as_deref(), Some("did you mean `fashion-mnist`?"));
        assert_eq!(p.location.unwrap().line, 2);
    }

    #[test]
    fn every_schema_problem_is_reported_not_only_the_first() {
        let text = "name: x\ndataset: { kind: fashion-mnist }\nsearch:\n  llrdd: [0.7]\n  repeats: two\nfinetune:\n  epochs: many\n  warmup: 1\nproxies:\n  - { name: a, classes: 3 }\n  - { name: b, clases: 3 }\n";
        let (study, _, problems) = parse_all(text);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["search.llrdd", "search.repeats", "finetune.epochs", "finetune.warmup", "proxies[1].clases"]);
        assert_eq!(problems[4].location.unwrap().line, 11);
        assert!(problems[1].message.contains("two"), "{}", problems[1].message);
        // What is left parses, so its values can be checked too.
        let study = study.unwrap();
        assert_eq!(study.proxies.len(), 2);
        // A required key lost to its wrong type is reported as that, not also as missing.
        let (study, _, problems) = parse_all("name: [1]\ndataset: { kind: fashion-mnist }\nseed: x\n");
        assert!(study.is_none());
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["name", "seed"], "{problems:?}");
        // After a syntax error nothing else is read.
        let (study, _, problems) = parse_all("name: x\ndataset: { kind: fashion-mnist\n");
        assert!(study.is_none() && problems.len() == 1);
    }

    #[test]
    fn rust_type_names_stay_out_of_messages() {
        let e = err_of("name: x\ndataset: { kind: fashion-mnist }\nfinetune: 3\n");
        assert_eq!(e.problems[0].message, "invalid type: integer `3`, expected a map of settings");
        let e = err_of("- 1\n- 2\n");
        assert_eq!(e.problems[0].message, "invalid type: sequence, expected a map of settings");
    }

    #[test]
    fn model_may_be_a_name_or_a_map() {
        let (s, _) = parse(Path::new("s"), "name: x\ndataset: {kind: fashion-mnist}\nmodel: vit_small_patch16\n").unwrap();
        assert_eq!(s.model.shape().unwrap().embed_dim, 384);
        let (s, _) = parse(
            Path::new("s"),
            "name: x\ndataset: {kind: fashion-mnist}\nmodel: {preset: vit_tiny_patch16, image_size: 28, patch_size: 4, in_chans: 1}\n",
        )
        .unwrap();
        let shape = s.model.shape().unwrap();
        assert_eq!((shape.image_size, shape.patch_size, shape.in_chans, shape.embed_dim), (28, 4, 1, 192));
        let e = err_of("name: x\ndataset: {kind: fashion-mnist}\nmodel: {image_sise: 28}\n");
        assert_eq!(e.problems[0].hint.as_deref(), Some("did you mean `image_size`?"));
    }
}

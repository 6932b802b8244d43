//! Where each value of a YAML document sits in its file.
//!
//! serde_yaml reports a position for syntax and type errors, but a value that parses and is
//! then found wrong (an LLRD of 1.2) has lost its position by the time validation sees it.
//! This index walks the document's events once and records, for every path in the notation of
//! `serde_path_to_error` (`search.llrd[3]`), where its value (and, for map entries, its key)
//! starts. Validation reports a path; the index turns it into `file:line:column`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in a study file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl From<Marker> for Location {
    fn from(m: Marker) -> Self {
        // yaml-rust2 lines are 1-based and columns 0-based.
        Location { line: m.line(), column: m.col() + 1 }
    }
}

/// Positions of values and keys by path.
#[derive(Debug, Default)]
pub struct LocationIndex {
    values: HashMap<String, Location>,
    keys: HashMap<String, Location>,
    /// The second place a key appears in one mapping (YAML forbids it; serde says only which).
    repeated: HashMap<String, Location>,
}

impl LocationIndex {
    /// Index a YAML text. A text that does not parse gives an empty index: serde_yaml reports
    /// the syntax error with its own position.
    pub fn build(text: &str) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return LocationIndex::default();
        }
        walker.index
    }

    /// Where the value at `path` starts; for a missing path, the closest existing parent.
    pub fn value(&self, path: &str) -> Option<Location> {
        let mut p = path.to_string();
        loop {
            if let Some(loc) = self.values.get(&p) {
                return Some(*loc);
            }
            p = parent(&p)?;
        }
    }

    /// Where the key of the map entry at `path` starts (`search.llrdd` -> the `llrdd` key).
    pub fn key(&self, path: &str) -> Option<Location> {
        self.keys.get(path).copied()
    }

    /// Where the key at `path` appears a second time in its mapping, if it does.
    pub fn repeated_key(&self, path: &str) -> Option<Location> {
        self.repeated.get(path).copied()
    }

    /// The keys present in the mapping at `path` (the root is "").
    pub fn keys_of(&self, path: &str) -> Vec<String> {
        let prefix = if path.is_empty() { String::new() } else { format!("{path}.") };
        let mut keys: Vec<String> = self
            .keys
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('.') && !rest.contains('['))
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }
}

/// `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> `` -> None.
fn parent(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(path[..cut].to_string())
}

enum Frame {
    Map { path: String, pending_key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    index: LocationIndex,
    /// Depth of a complex (non-scalar) map key being skipped.
    skipping_key: usize,
}

impl Walker {
    /// The path of the value that starts now, or None when the event is a map key.
    fn next_value_path(&mut self, key_text: Option<&str>, mark: Marker) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, pending_key }) => match pending_key.take() {
                Some(key) => Some(join(path, &key)),
                None => {
                    // This event is a key.
                    let key = key_text.unwrap_or("?").to_string();
                    let at = join(path, &key);
                    if self.index.keys.contains_key(&at) {
                        self.index.repeated.entry(at).or_insert(mark.into());
                    } else {
                        self.index.keys.insert(at, mark.into());
                    }
                    *pending_key = Some(key);
                    None
                }
            },
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.skipping_key > 0 {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.skipping_key += 1,
                Event::MappingEnd | Event::SequenceEnd => self.skipping_key -= 1,
                _ => {}
            }
            return;
        }
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(p) = self.next_value_path(Some(&text), mark) {
                    self.index.values.insert(p, mark.into());
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.next_value_path(Some("*alias"), mark) {
                    self.index.values.insert(p, mark.into());
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                match self.next_value_path(None, mark) {
                    Some(p) => {
                        self.index.values.insert(p.clone(), mark.into());
                        self.stack.push(if is_map {
                            Frame::Map { path: p, pending_key: None }
                        } else {
                            Frame::Seq { path: p, next: 0 }
                        });
                    }
                    None => {
                        // A map or list used as a key: not part of any study schema.
                        if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
                            *pending_key = Some("?".into());
                        }
                        self.skipping_key = 1;
                    }
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: demo\nsearch:\n  llrd: [0.5, 0.6,\n    1.2]\n  blr:\n    - 1.0e-3\nproxies:\n  - { name: a, classes: 5 }\n";

    #[test]
    fn finds_values_and_keys_by_path() {
        let idx = LocationIndex::build(DOC);
        assert_eq!(idx.value("name"), Some(Location { line: 1, column: 7 }));
        assert_eq!(idx.value("search.llrd[2]"), Some(Location { line: 4, column: 5 }));
        assert_eq!(idx.value("search.blr[0]"), Some(Location { line: 6, column: 7 }));
        assert_eq!(idx.value("proxies[0].classes"), Some(Location { line: 8, column: 25 }));
        assert_eq!(idx.key("search.blr"), Some(Location { line: 5, column: 3 }));
    }

    #[test]
    fn missing_path_falls_back_to_parent() {
        let idx = LocationIndex::build(DOC);
        assert_eq!(idx.value("search.repeats"), idx.value("search"));
        assert_eq!(idx.keys_of("search"), vec!["blr".to_string(), "llrd".to_string()]);
    }
}

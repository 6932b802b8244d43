//! Errors in a study file: each names the file, the line and column, the field and the value.

use std::fmt;
use std::path::PathBuf;

use super::locate::Location;

/// One thing wrong with a study.
#[derive(Debug, Clone)]
pub struct Problem {
    pub location: Option<Location>,
    /// The field's path, `search.llrd[3]`; empty for the document as a whole.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

/// A study that cannot be used, with every problem found in it.
#[derive(Debug)]
pub struct StudyError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl StudyError {
    pub fn single(file: impl Into<PathBuf>, problem: Problem) -> Self {
        StudyError { file: file.into(), problems: vec![problem] }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl fmt::Display for StudyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.location {
                Some(loc) => write!(f, "{}:{}: {}", self.file.display(), loc, p)?,
                None => write!(f, "{}: {}", self.file.display(), p)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for StudyError {}

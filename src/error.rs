//! The library's error, and which errors are the user's to fix (exit code 2).

use std::path::PathBuf;

use crate::data::DataError;
use crate::study::StudyError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Study(#[from] StudyError),
    #[error(transparent)]
    Data(#[from] DataError),
    /// Arguments that parse but do not make sense together.
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A run that ended but did not succeed (diverged, failed).
    #[error("{0}")]
    Failed(String),
    /// Stopped by the user; resumable.
    #[error("{0}")]
    Interrupted(String),
}

impl Error {
    /// 2 for what the user can fix (a study, a path, an argument), 1 for everything else. An
    /// I/O error is the user's when it is about the path given (missing, of the wrong kind,
    /// not theirs to write), the machine's otherwise (a full disk, a failing device).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Study(_) | Error::Usage(_) => 2,
            Error::Io { source, .. } | Error::Data(DataError::Io { source, .. }) if is_path_error(source) => 2,
            Error::Data(DataError::Io { .. }) | Error::Io { .. } | Error::Failed(_) => 1,
            Error::Interrupted(_) => 130,
            Error::Data(_) => 2,
        }
    }
}

fn is_path_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), NotFound | PermissionDenied | AlreadyExists | NotADirectory | IsADirectory | DirectoryNotEmpty | InvalidFilename | InvalidData | ReadOnlyFilesystem)
}

//! The crate's errors, one enum per stage, so a caller can tell a *rejection* (the submitter's
//! parameters are wrong: answer 4xx, never dispatch) from a *failure* (a node or an output
//! misbehaved: re-dispatch, flag) without string matching.

use thiserror::Error;

use crate::class::KNOWN_CLASSES;

/// The task's class or parameters do not fit: a rejection at intake. Always names the field
/// (dotted for nested ones, e.g. `scene.span`) so the submitter can fix it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamError {
    #[error("unknown workload class {class:?}; known: {}", KNOWN_CLASSES.join(", "))]
    UnknownClass { class: String },
    #[error("parameter `{field}`: {reason}")]
    Field { field: String, reason: String },
}

impl ParamError {
    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ParamError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The offending field; `None` for an unknown class.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            ParamError::UnknownClass { .. } => None,
            ParamError::Field { field, .. } => Some(field),
        }
    }
}

/// A sub-task's input could not be executed. On a node this is the answer to a malformed or
/// hostile dispatch: it must come back as an error, never as a panic or an unbounded run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExecError {
    #[error("input of {len} bytes exceeds the limit of {max}")]
    InputTooLarge { len: usize, max: usize },
    #[error("malformed input: {0}")]
    Malformed(String),
    #[error("input field `{field}` out of bounds: {reason}")]
    OutOfBounds { field: &'static str, reason: String },
    #[error("sub-task kind `{0}` needs an inference engine, and none was given")]
    NeedsEngine(&'static str),
    #[error("inference engine: {0}")]
    Engine(String),
    /// The reference could not encode its output (an image the encoder refuses).
    #[error("encoding the output: {0}")]
    Output(String),
}

/// A dependent sub-task's input could not be built from its dependencies' outputs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InputError {
    #[error("no sub-task {0} in the plan")]
    UnknownSubtask(u32),
    #[error("sub-task {index} needs the output of sub-task {dep}, which was not given")]
    MissingDep { index: u32, dep: u32 },
    #[error("output of sub-task {dep} is malformed: {reason}")]
    MalformedDepOutput { dep: u32, reason: String },
}

/// The validated outputs could not be assembled into the task's output: a sub-task output is
/// missing or does not have the shape its input implies.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AggError {
    #[error("the output of sub-task {0} is missing")]
    Missing(u32),
    #[error("output of sub-task {index} is malformed: {reason}")]
    Malformed { index: u32, reason: String },
    #[error("encoding the final output: {0}")]
    Encode(String),
}

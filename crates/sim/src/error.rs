use mechanism::MechanismError;
use std::path::PathBuf;
use thiserror::Error;

/// Why an experiment could not run or could not write its results. Each variant names the
/// parameter, file or epoch at fault and carries the underlying reason in its message (not as
/// a separate error source), so the `agora` binary prints one self-contained line.
#[derive(Debug, Error)]
pub enum SimError {
    /// An option out of its range.
    #[error("{name} is {value}, expected {expected}")]
    BadParameter {
        /// The option, as the command line names it.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: String,
    },
    /// The output directory cannot be created or written to.
    #[error("cannot use output directory {}: {reason}", path.display())]
    OutputDir {
        /// The directory asked for.
        path: PathBuf,
        /// The operating system's error.
        reason: std::io::Error,
    },
    /// A result file cannot be written.
    #[error("cannot write {}: {reason}", path.display())]
    Write {
        /// The result file being written.
        path: PathBuf,
        /// The operating system's (or CSV writer's) error.
        reason: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error(transparent)]
    Figure(#[from] figures::FigureError),
    /// The network's weights do not make a weight matrix the mechanism accepts.
    #[error("cannot build the weight matrix: {0}")]
    Weights(MechanismError),
    /// A mechanism refused an epoch's input.
    #[error("the {mechanism} mechanism rejected epoch {epoch}: {reason}")]
    Mechanism {
        /// The variant's name.
        mechanism: &'static str,
        /// The epoch, from 0.
        epoch: usize,
        /// Why.
        reason: MechanismError,
    },
}

impl SimError {
    /// A [`SimError::BadParameter`]: the parameter `name` (as the CLI spells its flag) is `value`.
    pub fn bad(name: &'static str, value: impl std::fmt::Display, expected: impl Into<String>) -> Self {
        SimError::BadParameter { name, value: value.to_string(), expected: expected.into() }
    }
}

/// Checks that a rate or size parameter is finite and `>= 0`.
pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<(), SimError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(SimError::bad(name, value, "a finite number >= 0"))
    }
}

/// Checks that a share of stake lies strictly between 0 and 1.
pub(crate) fn open_unit(name: &'static str, value: f64) -> Result<(), SimError> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(SimError::bad(name, value, "a share strictly between 0 and 1"))
    }
}

/// Checks that a count is at least `min`.
pub(crate) fn at_least(name: &'static str, value: usize, min: usize) -> Result<(), SimError> {
    if value >= min {
        Ok(())
    } else {
        Err(SimError::bad(name, value, format!("at least {min}")))
    }
}

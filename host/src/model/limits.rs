//! Per-attempt limits, the server ceilings they must stay under, and the
//! per-step overrides that lower them. Plain data: the sandbox enforces them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The limits one attempt runs under.
///
/// The server has a default set and a ceiling set. A workflow step may lower
/// any limit, never raise it above the ceiling (see [`Limits::lowered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel budget; roughly one unit per wasm instruction executed.
    pub fuel: u64,
    /// Wall-clock limit, enforced while the guest computes and while it waits
    /// inside a host call.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Cap on the total linear memory of the instance, in bytes.
    pub memory_bytes: u64,
    /// Largest accepted input, in bytes.
    pub max_input_bytes: u64,
    /// Largest accepted output, in bytes.
    pub max_output_bytes: u64,
    /// Budget for log lines (log import, stdout and stderr), in bytes.
    pub max_log_bytes: u64,
}

impl Limits {
    /// The server-wide defaults an attempt gets when nothing lowers them.
    pub const DEFAULT: Self = Self {
        fuel: 10_000_000_000,
        timeout: Duration::from_secs(30),
        memory_bytes: 256 << 20,
        max_input_bytes: 4 << 20,
        max_output_bytes: 4 << 20,
        max_log_bytes: 64 << 10,
    };

    /// The server-wide ceilings: no step may ask for more than this.
    pub const CEILING: Self = Self {
        fuel: 100_000_000_000,
        timeout: Duration::from_secs(15 * 60),
        memory_bytes: 1 << 30,
        max_input_bytes: 16 << 20,
        max_output_bytes: 16 << 20,
        max_log_bytes: 1 << 20,
    };

    /// Applies per-step overrides on top of `self`, checking each against
    /// `ceiling`. An override above the ceiling is an error that names the
    /// limit; an override is otherwise taken as given, so a step can also
    /// lower a limit below the default.
    pub fn lowered(&self, overrides: &Overrides, ceiling: &Limits) -> Result<Limits, AboveCeiling> {
        fn pick<T: PartialOrd + Copy + std::fmt::Debug>(
            name: &'static str,
            default: T,
            requested: Option<T>,
            ceiling: T,
        ) -> Result<T, AboveCeiling> {
            match requested {
                None => Ok(if default > ceiling { ceiling } else { default }),
                Some(r) if r > ceiling => Err(AboveCeiling {
                    limit: name,
                    requested: format!("{r:?}"),
                    ceiling: format!("{ceiling:?}"),
                }),
                Some(r) => Ok(r),
            }
        }
        Ok(Limits {
            fuel: pick("fuel", self.fuel, overrides.fuel, ceiling.fuel)?,
            timeout: pick("timeout", self.timeout, overrides.timeout, ceiling.timeout)?,
            memory_bytes: pick(
                "memory",
                self.memory_bytes,
                overrides.memory_bytes,
                ceiling.memory_bytes,
            )?,
            max_input_bytes: pick(
                "max_input",
                self.max_input_bytes,
                None,
                ceiling.max_input_bytes,
            )?,
            max_output_bytes: pick(
                "max_output",
                self.max_output_bytes,
                None,
                ceiling.max_output_bytes,
            )?,
            max_log_bytes: pick("max_log", self.max_log_bytes, None, ceiling.max_log_bytes)?,
        })
    }
}

/// Serde support for `Duration` as whole milliseconds, so limits serialise
/// as plain numbers.
mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Per-step requests to lower limits. `None` keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Requested fuel budget.
    pub fuel: Option<u64>,
    /// Requested wall-clock limit.
    pub timeout: Option<Duration>,
    /// Requested memory cap in bytes.
    pub memory_bytes: Option<u64>,
}

/// A requested limit was above the server's ceiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit `{limit}` of {requested} is above the server ceiling of {ceiling}")]
pub struct AboveCeiling {
    /// Which limit.
    pub limit: &'static str,
    /// What was asked for.
    pub requested: String,
    /// The ceiling it exceeded.
    pub ceiling: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_may_lower_but_never_exceed_the_ceiling() {
        let lowered = Limits::DEFAULT
            .lowered(
                &Overrides {
                    fuel: Some(5),
                    timeout: Some(Duration::from_millis(10)),
                    memory_bytes: None,
                },
                &Limits::CEILING,
            )
            .unwrap();
        assert_eq!(lowered.fuel, 5);
        assert_eq!(lowered.timeout, Duration::from_millis(10));
        assert_eq!(lowered.memory_bytes, Limits::DEFAULT.memory_bytes);

        let err = Limits::DEFAULT
            .lowered(
                &Overrides {
                    memory_bytes: Some(Limits::CEILING.memory_bytes + 1),
                    ..Overrides::default()
                },
                &Limits::CEILING,
            )
            .unwrap_err();
        assert_eq!(err.limit, "memory");
    }

    #[test]
    fn defaults_above_a_lower_ceiling_are_clamped() {
        let ceiling = Limits {
            fuel: 10,
            ..Limits::CEILING
        };
        let l = Limits::DEFAULT
            .lowered(&Overrides::default(), &ceiling)
            .unwrap();
        assert_eq!(l.fuel, 10);
    }
}

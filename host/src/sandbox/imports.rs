//! Host side of the step world's own imports: `stephost:step/log` and
//! `stephost:step/config`.

use super::bindings::stephost::step::{config, log};
use super::state::StepHost;
use crate::model::{LogLevel, LogSource};

impl log::Host for StepHost {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.log.push(level, LogSource::Log, &message);
    }
}

impl config::Host for StepHost {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::Redactor;
    use crate::sandbox::logs::AttemptLog;

    fn host() -> StepHost {
        StepHost {
            log: AttemptLog::new(1024, Redactor::new(["s3cret".to_owned()])),
            config: BTreeMap::from([("greeting".to_owned(), "hi".to_owned())]),
        }
    }

    #[test]
    fn config_returns_configured_values_only() {
        let mut h = host();
        assert_eq!(
            config::Host::get(&mut h, "greeting".into()).as_deref(),
            Some("hi")
        );
        assert_eq!(config::Host::get(&mut h, "missing".into()), None);
    }

    #[test]
    fn log_lines_keep_their_level_and_are_redacted() {
        let mut h = host();
        log::Host::log(&mut h, log::Level::Error, "token s3cret leaked".into());
        let lines = h.log.finish();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].level, LogLevel::Error);
        assert_eq!(lines[0].message, "token [REDACTED] leaked");
    }
}

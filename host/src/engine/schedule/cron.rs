//! When a cron expression ticks, in a time zone, with one rule for
//! daylight-saving transitions.
//!
//! The expression is parsed by `croner` (5 fields, or 6 with a leading
//! seconds field; lists, ranges, steps, month and weekday names, `L`, `W`,
//! `#` and the `@daily` family) and matched against **local wall-clock
//! time** of the schedule's IANA time zone (jiff's time zone database).
//! Local times are then turned into instants by this rule, the same for
//! every expression:
//!
//! - **A skipped local time** (the hour a spring-forward transition removes)
//!   fires once, at the first instant after the gap. Several ticks inside
//!   one gap fire as that one instant.
//! - **A repeated local time** (the hour a fall-back transition repeats)
//!   fires once, at its first occurrence (the earlier offset). The second
//!   pass of the hour fires nothing.
//!
//! croner's own rule differs for interval expressions (it skips gap ticks
//! and fires repeated ticks twice); one rule for every expression is easier
//! to explain and to rely on, so croner enumerates civil times here and
//! this module resolves them.
//!
//! Pure: no clock, no I/O.

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};

use crate::model::Timestamp;

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Cron {
    pattern: croner::Cron,
    tz: TimeZone,
}

/// Which field of a schedule was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// `cron` or `timezone`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// How many civil matches one search looks at before giving up: a search
/// only passes over matches that resolve to instants already past (a
/// repeated hour, a gap), so a handful is the most any real zone needs.
const MAX_STEPS: usize = 10_000;

impl Cron {
    /// Parses `expr` to be read in the IANA zone `timezone`.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, Invalid> {
        let pattern = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(expr.trim())
            .map_err(|e| Invalid {
                field: "cron",
                message: format!(
                    "`{expr}` is not a cron expression (minute hour day-of-month month \
                     day-of-week, optionally with a leading seconds field): {e}"
                ),
            })?;
        // A field that selects no value at all (`,` or `1,,` in croner's
        // reading: empty list items are skipped) can never match, and
        // finding that out by searching walks every hour or minute up to
        // the year 5000: seconds of CPU per request. Such a field is
        // refused by name here, before any search (found by fuzzing:
        // fuzz/regressions/cron/empty-minute-list.txt).
        let p = &pattern.pattern;
        for (name, field) in [
            ("seconds", &p.seconds),
            ("minute", &p.minutes),
            ("hour", &p.hours),
            ("day-of-month", &p.days),
            ("month", &p.months),
            ("day-of-week", &p.days_of_week),
        ] {
            if field.values().is_empty() && !field.has_modifiers() {
                return Err(Invalid {
                    field: "cron",
                    message: format!(
                        "`{expr}`: the {name} field selects no value (an empty list item?)"
                    ),
                });
            }
        }
        let tz = TimeZone::get(timezone).map_err(|e| Invalid {
            field: "timezone",
            message: format!(
                "`{timezone}` is not an IANA time zone such as `Europe/Berlin` or `UTC`: {e}"
            ),
        })?;
        let cron = Self { pattern, tz };
        // An expression that can never match (`0 0 30 2 *`) is refused now
        // rather than turning the schedule completed at once.
        if cron.next_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(Invalid {
                field: "cron",
                message: format!("`{expr}` never matches a date"),
            });
        }
        Ok(cron)
    }

    /// The first tick strictly after `t`, or `None` when there is none
    /// (before year 5000).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let mut civil = t.to_zoned(self.tz.clone()).datetime();
        for _ in 0..MAX_STEPS {
            let m = self.pattern.find_next_occurrence(&civil, false).ok()?;
            let at = self.resolve(m)?;
            if at > t {
                return Some(at);
            }
            civil = m;
        }
        None
    }

    /// The next `n` ticks after `t`.
    pub fn upcoming(&self, t: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// The instant a local time fires at, by the rule above.
    fn resolve(&self, local: DateTime) -> Option<Timestamp> {
        let ambiguous = self.tz.to_ambiguous_timestamp(local);
        match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { offset }
            | AmbiguousOffset::Fold { before: offset, .. } => offset.to_timestamp(local).ok(),
            AmbiguousOffset::Gap { after, .. } => {
                // Read with the later offset, the local time is an instant
                // before the transition (the gap's length before it); the
                // first transition after that instant is the gap's end.
                let before_gap = after.to_timestamp(local).ok()?;
                self.tz
                    .following(before_gap)
                    .next()
                    .map(|transition| transition.timestamp())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ticks(cron: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        Cron::parse(cron, tz)
            .unwrap()
            .upcoming(ts(from), n)
            .into_iter()
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn five_and_six_fields_names_steps_and_lists() {
        assert_eq!(
            ticks("*/15 9-10 * * MON-FRI", "UTC", "2030-01-04T10:20:00Z", 3),
            // Friday 10:30 and 10:45, then Monday 09:00.
            [
                "2030-01-04T10:30:00Z",
                "2030-01-04T10:45:00Z",
                "2030-01-07T09:00:00Z"
            ]
        );
        assert_eq!(
            ticks("30 * * * * *", "UTC", "2030-01-01T00:00:00Z", 2),
            ["2030-01-01T00:00:30Z", "2030-01-01T00:01:30Z"]
        );
        assert_eq!(
            ticks("0 12 1,15 JAN *", "UTC", "2030-01-01T12:00:00Z", 2),
            ["2030-01-15T12:00:00Z", "2031-01-01T12:00:00Z"]
        );
        assert_eq!(
            ticks("@daily", "UTC", "2030-01-01T00:00:00Z", 1),
            ["2030-01-02T00:00:00Z"]
        );
    }

    #[test]
    fn the_time_zone_moves_the_ticks() {
        // 09:00 in Tokyo (UTC+9, no daylight saving) is midnight UTC.
        assert_eq!(
            ticks("0 9 * * *", "Asia/Tokyo", "2030-06-01T00:00:00Z", 2),
            ["2030-06-02T00:00:00Z", "2030-06-03T00:00:00Z"]
        );
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        for bad in ["", "* * *", "61 * * * *", "* * * * FOO", "1 2 3 4 5 6 7 8"] {
            let e = Cron::parse(bad, "UTC").unwrap_err();
            assert_eq!(e.field, "cron", "{bad}: {e:?}");
        }
        for (empty, name) in [
            (",  * * *     2", "minute"),
            ("0 , * * *", "hour"),
            ("0 0 ,, * *", "day-of-month"),
            ("0 0 * , *", "month"),
            ("0 0 * * ,", "day-of-week"),
            (", 0 0 * * *", "seconds"),
        ] {
            let e = Cron::parse(empty, "UTC").unwrap_err();
            assert_eq!(e.field, "cron", "{empty}: {e:?}");
            assert!(
                e.message
                    .contains(&format!("the {name} field selects no value")),
                "{empty}: {e:?}"
            );
        }
        let e = Cron::parse("0 0 30 2 *", "UTC").unwrap_err();
        assert!(e.message.contains("never matches"), "{e:?}");
        let e = Cron::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(e.field, "timezone");
        assert!(e.message.contains("Mars/Olympus"), "{e:?}");
    }

    // Europe/Berlin: on 2030-03-31 02:00 CET becomes 03:00 CEST (01:00 UTC);
    // on 2030-10-27 03:00 CEST becomes 02:00 CET (01:00 UTC).

    #[test]
    fn berlin_spring_forward_fires_a_skipped_time_once_after_the_gap() {
        // Daily at 02:30: the day without 02:30 fires at 03:00 CEST.
        assert_eq!(
            ticks("30 2 * * *", "Europe/Berlin", "2030-03-29T12:00:00Z", 3),
            [
                "2030-03-30T01:30:00Z", // 02:30 CET
                "2030-03-31T01:00:00Z", // 03:00 CEST, the end of the gap
                "2030-04-01T00:30:00Z", // 02:30 CEST
            ]
        );
        // Every 20 minutes: 02:00, 02:20 and 02:40 fall in the gap and fire
        // once, at 03:00 CEST, which is also a tick of its own.
        assert_eq!(
            ticks("*/20 * * * *", "Europe/Berlin", "2030-03-31T00:30:00Z", 4),
            [
                "2030-03-31T00:40:00Z", // 01:40 CET
                "2030-03-31T01:00:00Z", // 03:00 CEST
                "2030-03-31T01:20:00Z", // 03:20 CEST
                "2030-03-31T01:40:00Z",
            ]
        );
    }

    #[test]
    fn berlin_fall_back_fires_a_repeated_time_once() {
        // Daily at 02:30: only the first 02:30 (CEST) fires.
        assert_eq!(
            ticks("30 2 * * *", "Europe/Berlin", "2030-10-26T12:00:00Z", 2),
            ["2030-10-27T00:30:00Z", "2030-10-28T01:30:00Z"]
        );
        // Hourly: 02:00 CEST fires, the repeated 02:00 CET does not; 03:00
        // CET is an hour later than usual.
        assert_eq!(
            ticks("0 * * * *", "Europe/Berlin", "2030-10-26T23:30:00Z", 3),
            [
                "2030-10-27T00:00:00Z", // 02:00 CEST
                "2030-10-27T02:00:00Z", // 03:00 CET
                "2030-10-27T03:00:00Z",
            ]
        );
    }

    // America/New_York: on 2030-03-10 02:00 EST becomes 03:00 EDT (07:00
    // UTC); on 2030-11-03 02:00 EDT becomes 01:00 EST (06:00 UTC).

    #[test]
    fn new_york_spring_forward_fires_a_skipped_time_once_after_the_gap() {
        assert_eq!(
            ticks("15 2 * * *", "America/New_York", "2030-03-09T00:00:00Z", 3),
            [
                "2030-03-09T07:15:00Z", // 02:15 EST
                "2030-03-10T07:00:00Z", // 03:00 EDT
                "2030-03-11T06:15:00Z", // 02:15 EDT
            ]
        );
    }

    #[test]
    fn new_york_fall_back_fires_a_repeated_time_once() {
        assert_eq!(
            ticks("30 1 * * *", "America/New_York", "2030-11-02T12:00:00Z", 2),
            ["2030-11-03T05:30:00Z", "2030-11-04T06:30:00Z"]
        );
        // Every 30 minutes through the repeated hour: 01:00 and 01:30 fire
        // once each (EDT), then 02:00 EST.
        assert_eq!(
            ticks(
                "*/30 * * * *",
                "America/New_York",
                "2030-11-03T04:45:00Z",
                4
            ),
            [
                "2030-11-03T05:00:00Z", // 01:00 EDT
                "2030-11-03T05:30:00Z", // 01:30 EDT
                "2030-11-03T07:00:00Z", // 02:00 EST
                "2030-11-03T07:30:00Z",
            ]
        );
    }

    #[test]
    fn a_search_from_inside_the_repeated_hour_goes_forward() {
        // At 01:10 EST (the second pass), the next hourly tick is 02:00 EST,
        // never the 01:xx already fired.
        assert_eq!(
            ticks(
                "*/30 * * * *",
                "America/New_York",
                "2030-11-03T06:10:00Z",
                1
            ),
            ["2030-11-03T07:00:00Z"]
        );
    }
}

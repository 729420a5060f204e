//! The time "now", injectable so key expiry and deadlines can be tested.

use std::time::SystemTime;

/// Where "now" comes from: the system clock, or a fixed instant in tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    fixed: Option<SystemTime>,
}

impl Clock {
    /// The real clock.
    pub fn system() -> Clock {
        Clock { fixed: None }
    }

    /// A clock that always answers `at`.
    pub fn fixed(at: SystemTime) -> Clock {
        Clock { fixed: Some(at) }
    }

    pub fn now(&self) -> SystemTime {
        self.fixed.unwrap_or_else(SystemTime::now)
    }
}

/// Formats a time as RFC 3339 UTC with whole seconds: `2026-11-23T16:40:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Formats a time as RFC 3339 UTC to the microsecond
/// (`2026-11-23T16:40:00.123456Z`): events a maintainer records in one
/// second keep their order.
pub fn rfc3339_micros(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into())
}

/// Parses an RFC 3339 time.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

//! Time as the platform stores and sends it: microsecond precision (PostgreSQL's), protobuf
//! `Timestamp` (and `Duration`) on the wire.

use chrono::{DateTime, Utc};
use pbjson_types::{Duration, Timestamp};

/// Now, truncated to microseconds so what a handler returns equals what it reads back later.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// A protobuf timestamp.
pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The instant of a protobuf timestamp; `None` if it is out of chrono's range or its nanos are
/// negative.
pub fn from_timestamp(t: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// A protobuf duration of whole seconds.
pub fn duration_secs(seconds: i64) -> Duration {
    Duration { seconds, nanos: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_has_whole_microseconds() {
        assert_eq!(now().timestamp_subsec_nanos() % 1000, 0);
    }

    #[test]
    fn timestamps_keep_seconds_and_nanos() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap_or_default();
        assert_eq!(
            timestamp(at),
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_000
            }
        );
        assert_eq!(from_timestamp(&timestamp(at)), Some(at));
        assert_eq!(
            from_timestamp(&Timestamp {
                seconds: 0,
                nanos: -1
            }),
            None
        );
    }
}

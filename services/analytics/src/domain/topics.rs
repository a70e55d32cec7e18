//! The topics the analytics service follows: every service's command and events topic.

/// Whether a topic carries commands or events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Command,
    Event,
}

impl Kind {
    /// The `kind` column of the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Event => "event",
        }
    }
}

/// One followed topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic {
    /// The publishing service.
    pub service: &'static str,
    pub kind: Kind,
    /// The short topic name, `{service}-commands` or `{service}-events`.
    pub short: &'static str,
    /// The inbox consumer name, `analytics/{short}`.
    pub consumer: &'static str,
    /// The process part that consumes it.
    pub part: &'static str,
}

macro_rules! topic {
    ($service:literal, $kind:ident, $suffix:literal) => {
        Topic {
            service: $service,
            kind: Kind::$kind,
            short: concat!($service, "-", $suffix),
            consumer: concat!("analytics/", $service, "-", $suffix),
            part: concat!($service, "-", $suffix, " projection"),
        }
    };
}

/// Every topic followed, events first.
pub const TOPICS: [Topic; 8] = [
    topic!("campaign", Event, "events"),
    topic!("tracking", Event, "events"),
    topic!("commission", Event, "events"),
    topic!("payment", Event, "events"),
    topic!("campaign", Command, "commands"),
    topic!("tracking", Command, "commands"),
    topic!("commission", Command, "commands"),
    topic!("payment", Command, "commands"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use service_runtime::outbox::{commands_topic, events_topic};

    #[test]
    fn the_topics_are_the_services_own() {
        for topic in TOPICS {
            let expected = match topic.kind {
                Kind::Command => commands_topic(topic.service),
                Kind::Event => events_topic(topic.service),
            };
            assert_eq!(topic.short, expected);
            assert_eq!(topic.consumer, format!("analytics/{}", topic.short));
        }
    }
}

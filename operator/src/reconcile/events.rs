//! The Events a reconcile publishes, derived from what changed: topics
//! created or grown, and conditions that moved. Pure, so a reconcile that
//! changes nothing publishes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::{Event, EventType};

use crate::crd::AnalyticsPipelineStatus;
use crate::status::{
    DEGRADED, MIGRATIONS_COMPLETE, READY, SCALING_ACTIVE, SCALING_LIMITED, TOPICS_READY,
};
use crate::topics::{Retention, TopicChange, TopicOutcome};

/// Longest note the Events API takes (1 kB).
const MAX_NOTE: usize = 1024;

fn event(type_: EventType, reason: &str, action: &str, note: &str) -> Event {
    let mut note = note.to_owned();
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    }
}

/// `TopicCreated` / `TopicGrown` / `TopicRetentionChanged` for what the
/// reconcile did to topics: one Event per reason naming every topic (the
/// recorder folds Events of the same reason into one series, so one per
/// topic would hide all but one).
pub fn topic_events(outcomes: &[TopicOutcome]) -> Vec<Event> {
    ["TopicCreated", "TopicGrown", "TopicRetentionChanged"]
        .into_iter()
        .filter_map(|reason| {
            let notes: Vec<String> = outcomes
                .iter()
                .filter_map(|o| match (&o.change, &o.retention) {
                    (_, Retention::Changed { .. }) if reason == "TopicRetentionChanged" => {
                        o.retention_message()
                    }
                    (TopicChange::Created, _) if reason == "TopicCreated" => Some(o.message()),
                    (TopicChange::Grown { .. }, _) if reason == "TopicGrown" => Some(o.message()),
                    _ => None,
                })
                .collect();
            (!notes.is_empty())
                .then(|| event(EventType::Normal, reason, "EnsureTopics", &notes.join("; ")))
        })
        .collect()
}

/// One Event per condition that changed status or reason between
/// `previous` and `next`, where the change means something to a reader of
/// `kubectl describe`.
pub fn transition_events(
    previous: Option<&AnalyticsPipelineStatus>,
    next: &AnalyticsPipelineStatus,
) -> Vec<Event> {
    let before = |t: &str| previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == t));
    next.conditions
        .iter()
        .filter(|c| before(&c.type_).is_none_or(|b| b.status != c.status || b.reason != c.reason))
        .filter_map(condition_event)
        .collect()
}

fn condition_event(c: &Condition) -> Option<Event> {
    let (type_, reason, action) = match (c.type_.as_str(), c.status.as_str(), c.reason.as_str()) {
        (TOPICS_READY, "False", r) => (EventType::Warning, r, "EnsureTopics"),
        (MIGRATIONS_COMPLETE, "False", "Running") => {
            (EventType::Normal, "MigrationStarted", "Migrate")
        }
        (MIGRATIONS_COMPLETE, "False", "Unschedulable" | "PodNotStarting" | "NoPod") => {
            (EventType::Warning, "MigrationPending", "Migrate")
        }
        (MIGRATIONS_COMPLETE, "False", _) => (EventType::Warning, "MigrationFailed", "Migrate"),
        (MIGRATIONS_COMPLETE, "True", "Succeeded") => {
            (EventType::Normal, "MigrationSucceeded", "Migrate")
        }
        (DEGRADED, "True", "InvalidSpec") => (EventType::Warning, "InvalidSpec", "Validate"),
        (DEGRADED, "True", r @ ("ApplyFailed" | "RolloutStalled")) => {
            (EventType::Warning, r, "Apply")
        }
        (READY, "True", _) => (EventType::Normal, "Ready", "Reconcile"),
        (SCALING_ACTIVE, "False", r) => (EventType::Warning, r, "Scale"),
        (SCALING_LIMITED, "True", r @ ("PartitionGrowthUnsupported" | "PartitionGrowthFailed")) => {
            (EventType::Warning, r, "Scale")
        }
        (SCALING_LIMITED, "True", r) => (EventType::Normal, r, "Scale"),
        _ => return None,
    };
    Some(event(type_, reason, action, &c.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn status(conditions: &[(&str, &str, &str)]) -> AnalyticsPipelineStatus {
        AnalyticsPipelineStatus {
            conditions: conditions
                .iter()
                .map(|(t, s, r)| Condition {
                    type_: (*t).into(),
                    status: (*s).into(),
                    reason: (*r).into(),
                    message: format!("{t} is {s} because {r}"),
                    observed_generation: None,
                    last_transition_time: Time(Default::default()),
                })
                .collect(),
            ..AnalyticsPipelineStatus::default()
        }
    }

    fn reasons(events: &[Event]) -> Vec<(EventType, &str)> {
        events
            .iter()
            .map(|e| (e.type_, e.reason.as_str()))
            .collect()
    }

    #[test]
    fn conditions_that_move_are_told_once() {
        let running = status(&[
            (MIGRATIONS_COMPLETE, "False", "Running"),
            (READY, "False", "Progressing"),
        ]);
        assert_eq!(
            reasons(&transition_events(None, &running)),
            [(EventType::Normal, "MigrationStarted")]
        );
        assert!(transition_events(Some(&running), &running).is_empty());
        let failed = status(&[
            (MIGRATIONS_COMPLETE, "False", "Failed"),
            (READY, "False", "Degraded"),
        ]);
        assert_eq!(
            reasons(&transition_events(Some(&running), &failed)),
            [(EventType::Warning, "MigrationFailed")]
        );
        let ready = status(&[
            (MIGRATIONS_COMPLETE, "True", "Succeeded"),
            (READY, "True", "Ready"),
        ]);
        assert_eq!(
            reasons(&transition_events(Some(&failed), &ready)),
            [
                (EventType::Normal, "MigrationSucceeded"),
                (EventType::Normal, "Ready")
            ]
        );
        let refused = status(&[(TOPICS_READY, "False", "ShrinkRefused")]);
        assert_eq!(
            reasons(&transition_events(None, &refused)),
            [(EventType::Warning, "ShrinkRefused")]
        );
    }

    #[test]
    fn topic_changes_are_told_and_long_notes_fit() {
        let outcomes = [
            TopicOutcome {
                name: "events".into(),
                partitions: 12,
                change: TopicChange::Created,
                retention: Retention::AsSpecified,
            },
            TopicOutcome {
                name: "events-dlq".into(),
                partitions: 3,
                change: TopicChange::Unchanged,
                retention: Retention::AsSpecified,
            },
        ];
        let mut retained = outcomes.clone();
        retained[1].retention = Retention::Changed {
            from_ms: None,
            to_ms: 3_600_000,
        };
        let events = topic_events(&retained);
        assert_eq!(
            reasons(&events),
            [
                (EventType::Normal, "TopicCreated"),
                (EventType::Normal, "TopicRetentionChanged")
            ]
        );
        assert!(
            events[1]
                .note
                .as_deref()
                .is_some_and(|n| n.contains("events-dlq from the broker's default to 1 h")),
            "{:?}",
            events[1].note
        );
        let mut grown = outcomes.clone();
        grown[1].change = TopicChange::Grown { from: 1 };
        let events = topic_events(&grown);
        assert_eq!(
            reasons(&events),
            [
                (EventType::Normal, "TopicCreated"),
                (EventType::Normal, "TopicGrown")
            ]
        );
        let both_created = [outcomes[0].clone(), outcomes[0].clone()];
        let events = topic_events(&both_created);
        assert_eq!(events.len(), 1, "one Event names both topics");
        let long = event(EventType::Warning, "X", "Y", &"é".repeat(1000));
        assert!(
            long.note
                .is_some_and(|n| n.len() <= MAX_NOTE && n.ends_with("..."))
        );
    }
}

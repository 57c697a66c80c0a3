//! The Events a reconcile publishes, derived from what changed: topics
//! created or grown, and conditions that moved. Pure, so a reconcile that
//! changes nothing publishes nothing.

use kube::runtime::events::{Event, EventType};

use crate::crd::AnalyticsPipelineStatus;
use crate::status::{Verdict, announcement};
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

/// What a reconcile did to a topic, as an Event reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopicEvent {
    Created,
    Grown,
    RetentionChanged,
}

impl TopicEvent {
    const ALL: [Self; 3] = [Self::Created, Self::Grown, Self::RetentionChanged];

    fn reason(self) -> &'static str {
        match self {
            Self::Created => "TopicCreated",
            Self::Grown => "TopicGrown",
            Self::RetentionChanged => "TopicRetentionChanged",
        }
    }

    /// What `o` tells under this reason, if anything.
    fn note(self, o: &TopicOutcome) -> Option<String> {
        match (self, &o.change, &o.retention) {
            (Self::RetentionChanged, _, Retention::Changed { .. }) => o.retention_message(),
            (Self::Created, TopicChange::Created, _)
            | (Self::Grown, TopicChange::Grown { .. }, _) => Some(o.message()),
            _ => None,
        }
    }
}

/// `TopicCreated` / `TopicGrown` / `TopicRetentionChanged` for what the
/// reconcile did to topics: one Event per reason naming every topic (the
/// recorder folds Events of the same reason into one series, so one per
/// topic would hide all but one).
pub fn topic_events(outcomes: &[TopicOutcome]) -> Vec<Event> {
    TopicEvent::ALL
        .into_iter()
        .filter_map(|kind| {
            let notes: Vec<String> = outcomes.iter().filter_map(|o| kind.note(o)).collect();
            (!notes.is_empty()).then(|| {
                event(
                    EventType::Normal,
                    kind.reason(),
                    "EnsureTopics",
                    &notes.join("; "),
                )
            })
        })
        .collect()
}

/// One Event per condition whose status or reason moved from `previous`
/// to the new `verdicts`, where the change means something to a reader of
/// `kubectl describe` (see [`announcement`]). A verdict that keeps the
/// previous condition moved nothing.
pub fn transition_events(
    previous: Option<&AnalyticsPipelineStatus>,
    verdicts: &[Verdict],
) -> Vec<Event> {
    let before = |v: &Verdict| {
        previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == v.type_.as_str()))
    };
    verdicts
        .iter()
        .filter(|v| match before(v) {
            None => true,
            Some(_) if v.keep => false,
            Some(b) => b.status != v.truth.as_str() || b.reason != v.reason.as_str(),
        })
        .filter_map(|v| {
            let told = announcement(v.type_, v.truth, v.reason)?;
            Some(event(told.type_, told.reason, told.action, &v.message))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ConditionType as C, Reason as R, Truth};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn verdicts(list: &[(C, Truth, R)]) -> Vec<Verdict> {
        list.iter()
            .map(|&(type_, truth, reason)| Verdict {
                type_,
                truth,
                reason,
                message: format!("{type_:?} is {truth:?} because {reason:?}"),
                keep: false,
            })
            .collect()
    }

    /// The status those verdicts were written as.
    fn written(verdicts: &[Verdict]) -> AnalyticsPipelineStatus {
        AnalyticsPipelineStatus {
            conditions: verdicts
                .iter()
                .map(|v| Condition {
                    type_: v.type_.as_str().into(),
                    status: v.truth.as_str().into(),
                    reason: v.reason.as_str().into(),
                    message: v.message.clone(),
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
        let running = verdicts(&[
            (C::MigrationsComplete, Truth::False, R::Running),
            (C::Ready, Truth::False, R::Progressing),
        ]);
        assert_eq!(
            reasons(&transition_events(None, &running)),
            [(EventType::Normal, "MigrationStarted")]
        );
        assert!(transition_events(Some(&written(&running)), &running).is_empty());
        let failed = verdicts(&[
            (C::MigrationsComplete, Truth::False, R::Failed),
            (C::Ready, Truth::False, R::Degraded),
        ]);
        assert_eq!(
            reasons(&transition_events(Some(&written(&running)), &failed)),
            [(EventType::Warning, "MigrationFailed")]
        );
        let ready = verdicts(&[
            (C::MigrationsComplete, Truth::True, R::Succeeded),
            (C::Ready, Truth::True, R::Ready),
        ]);
        assert_eq!(
            reasons(&transition_events(Some(&written(&failed)), &ready)),
            [
                (EventType::Normal, "MigrationSucceeded"),
                (EventType::Normal, "Ready")
            ]
        );
        let refused = verdicts(&[(C::TopicsReady, Truth::False, R::ShrinkRefused)]);
        assert_eq!(
            reasons(&transition_events(None, &refused)),
            [(EventType::Warning, "ShrinkRefused")]
        );
    }

    #[test]
    fn a_condition_kept_from_before_is_not_told_again() {
        let before = verdicts(&[(C::ScalingActive, Truth::False, R::LagUnavailable)]);
        let mut waiting = verdicts(&[(C::ScalingActive, Truth::Unknown, R::Waiting)]);
        waiting[0].keep = true;
        assert!(transition_events(Some(&written(&before)), &waiting).is_empty());
        assert!(
            transition_events(None, &waiting).is_empty(),
            "an Unknown ScalingActive announces nothing"
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

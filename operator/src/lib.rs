//! The Tributary operator: reconciles `AnalyticsPipeline`
//! (`tributary.dev/v1alpha1`) into topics, migrations and Deployments.
//!
//! Not built yet: tracked in issue #7 (reconcile) and issue #8 (autoscaling).

/// The issue that tracks the operator.
pub const TRACKING_ISSUE: u32 = 7;

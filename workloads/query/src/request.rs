//! The JSON bodies of the query endpoints, and the errors that name the bad
//! field. Unknown fields are refused so typos do not silently change a query.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request that cannot be run, with the field at fault (`series[1].math`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RequestError {
    pub field: String,
    pub message: String,
}

impl RequestError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Parses a body, naming the path of the first problem.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = parsed.map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path == "?" {
            "body".to_owned()
        } else {
            path
        };
        let inner = e.into_inner();
        // serde_json appends "at line 1 column 9"; the field says where.
        let text = inner.to_string();
        let message = match text.rfind(" at line ") {
            Some(i) if inner.line() > 0 => text[..i].to_owned(),
            _ => text,
        };
        RequestError::new(field, message)
    })?;
    de.end()
        .map_err(|_| RequestError::new("body", "trailing characters after the JSON object"))?;
    Ok(value)
}

/// Width of the buckets of a trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Hour,
    #[default]
    Day,
    /// Weeks start on Monday.
    Week,
    Month,
}

/// Period of a retention table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    #[default]
    Day,
    Week,
}

/// How a series turns events into a number per bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Math {
    /// Number of events.
    #[default]
    Total,
    /// Number of distinct users (`distinct_id`).
    UniqueUsers,
    /// Sum, average, minimum or maximum of the numeric property
    /// `math_property`; events without it are left out.
    Sum,
    Avg,
    Min,
    Max,
}

impl Math {
    pub fn needs_property(self) -> bool {
        matches!(self, Self::Sum | Self::Avg | Self::Min | Self::Max)
    }
}

/// Comparison of a property filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Equal to `value` (a string, number or boolean), or to one of a list.
    #[default]
    Exact,
    /// Not equal (events without the property match).
    IsNot,
    /// Case-insensitive substring of a string property.
    Contains,
    NotContains,
    /// Numeric comparisons; events without the property never match.
    Gt,
    Gte,
    Lt,
    Lte,
    /// The property is present (any value) / absent. No `value`.
    IsSet,
    IsNotSet,
}

/// `{"key": "$browser", "operator": "exact", "value": "Chrome"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PropertyFilter {
    pub key: String,
    #[serde(default)]
    pub operator: Operator,
    /// A string, number or boolean, or a list of 1 to 100 of them; none for
    /// `is_set` and `is_not_set`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
}

/// One line of a trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Series {
    pub event: String,
    #[serde(default)]
    pub math: Math,
    #[serde(default)]
    pub math_property: Option<String>,
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
}

/// `POST /api/query/trend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrendRequest {
    pub series: Vec<Series>,
    pub date_from: String,
    #[serde(default)]
    pub date_to: Option<String>,
    #[serde(default)]
    pub interval: Interval,
    #[serde(default)]
    pub timezone: Option<String>,
    /// A property whose values split every series (top 25 plus the rest).
    #[serde(default)]
    pub breakdown: Option<String>,
    /// Filters applied to every series.
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
}

/// One step of a funnel (or an exclusion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub event: String,
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
}

/// How funnel steps must follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FunnelOrderRequest {
    /// In order; other events may come between steps.
    #[default]
    Ordered,
    /// In order with no other event of the user between steps.
    Strict,
    /// All steps, in any order.
    Unordered,
}

/// An event that disqualifies a conversion when it happens between two steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExclusionRequest {
    pub event: String,
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
    /// 0-based step after which the exclusion applies (default 0).
    #[serde(default)]
    pub from_step: usize,
    /// 0-based step before which it applies (default: the last step).
    #[serde(default)]
    pub to_step: Option<usize>,
}

/// `POST /api/query/funnel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunnelRequest {
    pub steps: Vec<Step>,
    pub date_from: String,
    #[serde(default)]
    pub date_to: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    /// Time allowed from the first step to the last: `30m`, `14d`, `2w`
    /// (default `14d`).
    #[serde(default)]
    pub conversion_window: Option<String>,
    #[serde(default)]
    pub order: FunnelOrderRequest,
    /// A property of the first step's event that splits the funnel.
    #[serde(default)]
    pub breakdown: Option<String>,
    #[serde(default)]
    pub exclusions: Vec<ExclusionRequest>,
    /// Filters applied to every step.
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
}

/// `POST /api/query/retention`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    /// The event whose first occurrence puts a user in a cohort.
    pub target: Step,
    /// The event that counts as coming back (default: the target event).
    #[serde(default)]
    pub returning: Option<Step>,
    /// Start of the first cohort (truncated to its period).
    pub date_from: String,
    #[serde(default)]
    pub period: Period,
    /// Number of cohorts and of periods followed (default 7).
    #[serde(default)]
    pub periods: Option<u32>,
    #[serde(default)]
    pub timezone: Option<String>,
    /// Filters applied to both events.
    #[serde(default)]
    pub filters: Vec<PropertyFilter>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_path_of_the_bad_field() {
        let e = parse::<TrendRequest>(
            br#"{"series":[{"event":"a"},{"event":"b","math":"median"}],"date_from":"-7d"}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "series[1].math");
        assert!(e.message.contains("median"), "{e}");

        let e =
            parse::<TrendRequest>(br#"{"series":[],"date_from":"-7d","colour":1}"#).unwrap_err();
        assert!(e.message.contains("unknown field `colour`"), "{e}");

        let e = parse::<TrendRequest>(br#"{"series":[]}"#).unwrap_err();
        assert!(e.message.contains("date_from"), "{e}");

        let e = parse::<TrendRequest>(b"{").unwrap_err();
        assert_eq!(e.field, "body");
    }

    #[test]
    fn defaults_apply() {
        let r: TrendRequest =
            parse(br#"{"series":[{"event":"$pageview"}],"date_from":"-7d"}"#).unwrap();
        assert_eq!(r.interval, Interval::Day);
        assert_eq!(r.series[0].math, Math::Total);
        assert!(r.breakdown.is_none());
    }
}

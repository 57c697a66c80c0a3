//! Saved insights and dashboards: what their bodies hold and the rules they
//! keep. Pure; stored by [`crate::store`], served by [`crate::saved_api`].
//!
//! An insight is a name, a description and one trend, funnel or retention
//! request exactly as the query routes take it; it is checked the same way
//! on save (by the routes, which plan it), so a saved insight always runs.
//! A dashboard is a name, a description and an ordered list of tiles, each
//! an insight of the same project with layout hints.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::request::RequestError;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
pub const MAX_TILES: usize = 50;
/// Columns of the dashboard grid; a tile's width is 1 to this.
pub const GRID_COLUMNS: i16 = 12;
pub const MAX_TILE_HEIGHT: i16 = 12;
const DEFAULT_WIDTH: i16 = 6;
const DEFAULT_HEIGHT: i16 = 4;

/// What an insight asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InsightKind {
    Trend,
    Funnel,
    Retention,
}

impl InsightKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Trend => "trend",
            Self::Funnel => "funnel",
            Self::Retention => "retention",
        }
    }

    /// The kind stored as `name`, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "trend" => Some(Self::Trend),
            "funnel" => Some(Self::Funnel),
            "retention" => Some(Self::Retention),
            _ => None,
        }
    }
}

/// A saved insight.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Insight {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub kind: InsightKind,
    /// The request, as the query route of `kind` takes it.
    #[schema(value_type = Object)]
    pub query: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A dashboard's place for one insight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    pub insight_id: i64,
    /// Columns of a 12-column grid (1 to 12; 6 unless given).
    #[serde(default = "default_width")]
    pub width: i16,
    /// Rows (1 to 12; 4 unless given).
    #[serde(default = "default_height")]
    pub height: i16,
}

fn default_width() -> i16 {
    DEFAULT_WIDTH
}

fn default_height() -> i16 {
    DEFAULT_HEIGHT
}

/// A saved dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Dashboard {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// In order.
    pub tiles: Vec<Tile>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/insights`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInsight {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: InsightKind,
    #[schema(value_type = Object)]
    pub query: Value,
}

/// `PATCH /api/insights/{id}`: the fields given replace the saved ones.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InsightPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub kind: Option<InsightKind>,
    #[schema(value_type = Option<Object>)]
    pub query: Option<Value>,
}

/// `POST /api/dashboards`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDashboard {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tiles: Vec<Tile>,
}

/// `PATCH /api/dashboards/{id}`: the fields given replace the saved ones
/// (`tiles` as a whole).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub tiles: Option<Vec<Tile>>,
}

/// A name without surrounding space: 1 to 200 characters, none of them
/// control characters.
pub fn check_name(name: &str) -> Result<String, RequestError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(RequestError::new("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(RequestError::new(
            "name",
            format!("at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(RequestError::new(
            "name",
            "must not hold control characters",
        ));
    }
    Ok(name.to_owned())
}

/// A description: at most 2000 characters; line breaks and tabs allowed,
/// other control characters not.
pub fn check_description(text: &str) -> Result<String, RequestError> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(RequestError::new(
            "description",
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(RequestError::new(
            "description",
            "must not hold control characters but line breaks and tabs",
        ));
    }
    Ok(text.to_owned())
}

/// At most 50 tiles, each naming an insight (ids start at 1) with a width
/// of 1 to 12 columns and a height of 1 to 12 rows. An insight may appear
/// on a dashboard more than once.
pub fn check_tiles(tiles: &[Tile]) -> Result<(), RequestError> {
    if tiles.len() > MAX_TILES {
        return Err(RequestError::new(
            "tiles",
            format!("at most {MAX_TILES} tiles"),
        ));
    }
    for (i, t) in tiles.iter().enumerate() {
        if t.insight_id < 1 {
            return Err(RequestError::new(
                format!("tiles[{i}].insight_id"),
                "an insight id (1 or more)",
            ));
        }
        if !(1..=GRID_COLUMNS).contains(&t.width) {
            return Err(RequestError::new(
                format!("tiles[{i}].width"),
                format!("1 to {GRID_COLUMNS} columns"),
            ));
        }
        if !(1..=MAX_TILE_HEIGHT).contains(&t.height) {
            return Err(RequestError::new(
                format!("tiles[{i}].height"),
                format!("1 to {MAX_TILE_HEIGHT} rows"),
            ));
        }
    }
    Ok(())
}

/// An error about the saved query, its field named under `query`.
pub fn in_query(e: RequestError) -> RequestError {
    let field = if e.field == "body" {
        "query".to_owned()
    } else if e.field.starts_with('[') {
        format!("query{}", e.field)
    } else {
        format!("query.{}", e.field)
    };
    RequestError::new(field, e.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse;

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(check_name("  Signups ").unwrap(), "Signups");
        assert_eq!(check_name(" ").unwrap_err().field, "name");
        assert!(check_name(&"x".repeat(200)).is_ok());
        assert!(
            check_name(&"é".repeat(201)).is_err(),
            "characters, not bytes"
        );
        assert!(check_name("a\u{0}b").is_err());
        assert!(check_description("line\nnext\ttab").is_ok());
        assert_eq!(
            check_description("bell\u{7}").unwrap_err().field,
            "description"
        );
        assert!(check_description(&"d".repeat(2_001)).is_err());
    }

    #[test]
    fn tiles_take_defaults_and_name_the_bad_one() {
        let d: NewDashboard = parse(
            br#"{"name":"d","tiles":[{"insight_id":3},{"insight_id":4,"width":12,"height":2}]}"#,
        )
        .unwrap();
        assert_eq!(
            d.tiles,
            vec![
                Tile {
                    insight_id: 3,
                    width: 6,
                    height: 4
                },
                Tile {
                    insight_id: 4,
                    width: 12,
                    height: 2
                }
            ]
        );
        check_tiles(&d.tiles).unwrap();
        for (tiles, field) in [
            (
                r#"[{"insight_id":1},{"insight_id":0}]"#,
                "tiles[1].insight_id",
            ),
            (r#"[{"insight_id":1,"width":13}]"#, "tiles[0].width"),
            (r#"[{"insight_id":1,"height":0}]"#, "tiles[0].height"),
        ] {
            let tiles: Vec<Tile> = serde_json::from_str(tiles).unwrap();
            assert_eq!(check_tiles(&tiles).unwrap_err().field, field);
        }
        let many = vec![
            Tile {
                insight_id: 1,
                width: 1,
                height: 1
            };
            51
        ];
        assert_eq!(check_tiles(&many).unwrap_err().field, "tiles");
        let e =
            parse::<NewDashboard>(br#"{"name":"d","tiles":[{"insight_id":1,"x":1}]}"#).unwrap_err();
        assert_eq!(e.field, "tiles[0].x", "the unknown field itself: {e:?}");
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused_by_name() {
        let e = parse::<NewInsight>(br#"{"name":"n","kind":"trend","query":{},"color":1}"#)
            .unwrap_err();
        assert_eq!(e.field, "color", "{e:?}");
        assert!(e.message.contains("unknown field"), "{e:?}");
        let e = parse::<NewInsight>(br#"{"name":"n","kind":"pie","query":{}}"#).unwrap_err();
        assert_eq!(e.field, "kind", "{e:?}");
        assert_eq!(InsightKind::from_name("funnel"), Some(InsightKind::Funnel));
        assert_eq!(InsightKind::from_name("Funnel"), None);
    }

    #[test]
    fn query_errors_are_named_under_query() {
        let named = |f: &str| in_query(RequestError::new(f, "m")).field;
        assert_eq!(named("steps[1].event"), "query.steps[1].event");
        assert_eq!(named("body"), "query");
        assert_eq!(named("[0]"), "query[0]");
    }
}

//! Postgres: saved insights and dashboards ([`crate::saved`]), in the
//! schema `tributary_query`, beside auth's tables in the same database.
//! Every statement names the project, so another project's rows are
//! indistinguishable from missing ones; the foreign keys of a dashboard's
//! tiles include the project too.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use tributary_core::postgres::dsn_server;

use crate::saved::{Dashboard, Insight, InsightKind, Tile};

/// The query service's Postgres migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The schema of the query service's tables (and of its migration record).
pub const SCHEMA: &str = "tributary_query";

/// What one project may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub insights: i64,
    pub dashboards: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            insights: 1_000,
            dashboards: 100,
        }
    }
}

/// Advisory lock classes (`pg_advisory_xact_lock(class, project)`) that
/// make one project's creations wait for each other, so the count a limit
/// is checked against cannot change under it.
const INSIGHTS_LOCK: i32 = 7_211;
const DASHBOARDS_LOCK: i32 = 7_212;

/// Postgres' code for a foreign key violation.
const FOREIGN_KEY_VIOLATION: &str = "23503";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("POSTGRES_DSN is not a Postgres URL: {0}")]
    Dsn(String),
    #[error("Postgres migration failed on {server}: {source}")]
    Migrate {
        server: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("saved insights are not ready: their Postgres migration has not run yet")]
    NotMigrated,
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The project keeps as many as it may.
    #[error("this project keeps {limit} {what}, the most it may (QUERY_MAX_{}_PER_PROJECT); delete some first", .what.to_uppercase())]
    Full { what: &'static str, limit: i64 },
    /// A tile names an insight this project does not have.
    #[error("{field}: no insight {insight_id} in this project")]
    UnknownInsight { field: String, insight_id: i64 },
    #[error("a stored row could not be read: {0}")]
    Unreadable(String),
}

/// Saved insights and dashboards.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    server: String,
    /// Whether the tables exist (migrated here, or by `tributary migrate`).
    migrated: Arc<AtomicBool>,
    limits: Limits,
}

impl Store {
    /// A pool that connects when first used, its sessions in [`SCHEMA`].
    /// `migrated`: whether the migration ran elsewhere (`tributary
    /// migrate`); otherwise [`Self::migrate`] must succeed first.
    pub fn new(dsn: &str, migrated: bool) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(dsn)
            .map_err(|e| StoreError::Dsn(e.to_string()))?
            .options([("search_path", SCHEMA)]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            server: dsn_server(dsn),
            migrated: Arc::new(AtomicBool::new(migrated)),
            limits: Limits::default(),
        })
    }

    /// What one project may keep.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Creates the schema and runs the migrations (idempotent; concurrent
    /// runs wait for each other on sqlx's lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let failed = |source| StoreError::Migrate {
            server: self.server.clone(),
            source,
        };
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .execute(&self.pool)
            .await
            .map_err(|e| failed(sqlx::migrate::MigrateError::Execute(e)))?;
        MIGRATOR.run(&self.pool).await.map_err(failed)?;
        self.migrated.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Migrates until it succeeds, every `every`, logging each failure.
    pub async fn migrate_until_done(&self, every: Duration) {
        loop {
            match self.migrate().await {
                Ok(()) => {
                    tracing::info!(server = %self.server, "saved insights: Postgres migrated");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "saved insights unavailable until Postgres migrates; retrying")
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    fn ready(&self) -> Result<&PgPool, StoreError> {
        if self.migrated.load(Ordering::Relaxed) {
            Ok(&self.pool)
        } else {
            Err(StoreError::NotMigrated)
        }
    }

    pub async fn create_insight(
        &self,
        project: i64,
        insight: &InsightFields,
    ) -> Result<Insight, StoreError> {
        let mut tx = self.ready()?.begin().await?;
        room(
            &mut tx,
            INSIGHTS_LOCK,
            "insights",
            project,
            self.limits.insights,
        )
        .await?;
        let row = sqlx::query(&format!(
            "INSERT INTO insights (project_id, name, description, kind, query) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {INSIGHT_COLUMNS}"
        ))
        .bind(project)
        .bind(&insight.name)
        .bind(&insight.description)
        .bind(insight.kind.name())
        .bind(&insight.query)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        insight_of(&row)
    }

    pub async fn insights(&self, project: i64) -> Result<Vec<Insight>, StoreError> {
        self.some_insights(project, None).await
    }

    /// The project's insights among `ids` (those that exist), by id.
    pub async fn insights_among(
        &self,
        project: i64,
        ids: &[i64],
    ) -> Result<Vec<Insight>, StoreError> {
        self.some_insights(project, Some(ids)).await
    }

    async fn some_insights(
        &self,
        project: i64,
        ids: Option<&[i64]>,
    ) -> Result<Vec<Insight>, StoreError> {
        sqlx::query(&format!(
            "SELECT {INSIGHT_COLUMNS} FROM insights \
             WHERE project_id = $1 AND ($2::bigint[] IS NULL OR id = ANY($2)) ORDER BY id"
        ))
        .bind(project)
        .bind(ids)
        .fetch_all(self.ready()?)
        .await?
        .iter()
        .map(insight_of)
        .collect()
    }

    pub async fn insight(&self, project: i64, id: i64) -> Result<Option<Insight>, StoreError> {
        sqlx::query(&format!(
            "SELECT {INSIGHT_COLUMNS} FROM insights WHERE project_id = $1 AND id = $2"
        ))
        .bind(project)
        .bind(id)
        .fetch_optional(self.ready()?)
        .await?
        .as_ref()
        .map(insight_of)
        .transpose()
    }

    /// Replaces an insight's fields; `None` when the project has no such
    /// insight.
    pub async fn update_insight(
        &self,
        project: i64,
        id: i64,
        insight: &InsightFields,
    ) -> Result<Option<Insight>, StoreError> {
        sqlx::query(&format!(
            "UPDATE insights SET name = $3, description = $4, kind = $5, query = $6, updated_at = now() \
             WHERE project_id = $1 AND id = $2 RETURNING {INSIGHT_COLUMNS}"
        ))
        .bind(project)
        .bind(id)
        .bind(&insight.name)
        .bind(&insight.description)
        .bind(insight.kind.name())
        .bind(&insight.query)
        .fetch_optional(self.ready()?)
        .await?
        .as_ref()
        .map(insight_of)
        .transpose()
    }

    /// Deletes an insight (taking it off every dashboard: the tiles'
    /// foreign key cascades) or a dashboard; `false` when the project has
    /// no such one.
    pub async fn delete(&self, what: Saved, project: i64, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "DELETE FROM {} WHERE project_id = $1 AND id = $2",
            what.table()
        ))
        .bind(project)
        .bind(id)
        .execute(self.ready()?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn create_dashboard(
        &self,
        project: i64,
        dashboard: &DashboardFields,
    ) -> Result<Dashboard, StoreError> {
        let mut tx = self.ready()?.begin().await?;
        room(
            &mut tx,
            DASHBOARDS_LOCK,
            "dashboards",
            project,
            self.limits.dashboards,
        )
        .await?;
        let row = sqlx::query(&format!(
            "INSERT INTO dashboards (project_id, name, description) VALUES ($1, $2, $3) \
             RETURNING {DASHBOARD_COLUMNS}"
        ))
        .bind(project)
        .bind(&dashboard.name)
        .bind(&dashboard.description)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        put_tiles(&mut tx, project, id, &dashboard.tiles).await?;
        tx.commit().await?;
        dashboard_of(&row, dashboard.tiles.clone())
    }

    pub async fn dashboards(&self, project: i64) -> Result<Vec<Dashboard>, StoreError> {
        let pool = self.ready()?;
        let rows = sqlx::query(&format!(
            "SELECT {DASHBOARD_COLUMNS} FROM dashboards WHERE project_id = $1 ORDER BY id"
        ))
        .bind(project)
        .fetch_all(pool)
        .await?;
        let tiles = sqlx::query(
            "SELECT dashboard_id, insight_id, width, height FROM dashboard_tiles \
             WHERE project_id = $1 ORDER BY dashboard_id, position",
        )
        .bind(project)
        .fetch_all(pool)
        .await?;
        let mut by_dashboard: std::collections::HashMap<i64, Vec<Tile>> =
            std::collections::HashMap::new();
        for t in &tiles {
            by_dashboard
                .entry(t.try_get("dashboard_id")?)
                .or_default()
                .push(tile_of(t)?);
        }
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get("id")?;
                dashboard_of(r, by_dashboard.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    pub async fn dashboard(&self, project: i64, id: i64) -> Result<Option<Dashboard>, StoreError> {
        let pool = self.ready()?;
        let Some(row) = sqlx::query(&format!(
            "SELECT {DASHBOARD_COLUMNS} FROM dashboards WHERE project_id = $1 AND id = $2"
        ))
        .bind(project)
        .bind(id)
        .fetch_optional(pool)
        .await?
        else {
            return Ok(None);
        };
        let tiles = sqlx::query(
            "SELECT insight_id, width, height FROM dashboard_tiles \
             WHERE project_id = $1 AND dashboard_id = $2 ORDER BY position",
        )
        .bind(project)
        .bind(id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(tile_of)
        .collect::<Result<Vec<_>, _>>()?;
        dashboard_of(&row, tiles).map(Some)
    }

    /// Replaces a dashboard's name, description and, when given, tiles;
    /// `None` when the project has no such dashboard.
    pub async fn update_dashboard(
        &self,
        project: i64,
        id: i64,
        name: &str,
        description: &str,
        tiles: Option<&[Tile]>,
    ) -> Result<Option<Dashboard>, StoreError> {
        let mut tx = self.ready()?.begin().await?;
        let updated = sqlx::query(
            "UPDATE dashboards SET name = $3, description = $4, updated_at = now() \
             WHERE project_id = $1 AND id = $2",
        )
        .bind(project)
        .bind(id)
        .bind(name)
        .bind(description)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Ok(None);
        }
        if let Some(tiles) = tiles {
            sqlx::query("DELETE FROM dashboard_tiles WHERE project_id = $1 AND dashboard_id = $2")
                .bind(project)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            put_tiles(&mut tx, project, id, tiles).await?;
        }
        tx.commit().await?;
        self.dashboard(project, id).await
    }
}

/// What a project saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Insight,
    Dashboard,
}

impl Saved {
    /// Its name in messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Insight => "insight",
            Self::Dashboard => "dashboard",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Self::Insight => "insights",
            Self::Dashboard => "dashboards",
        }
    }
}

/// An insight's fields as saved.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightFields {
    pub name: String,
    pub description: String,
    pub kind: InsightKind,
    pub query: Value,
}

/// A dashboard's fields as saved.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardFields {
    pub name: String,
    pub description: String,
    pub tiles: Vec<Tile>,
}

const INSIGHT_COLUMNS: &str = "id, name, description, kind, query, created_at, updated_at";
const DASHBOARD_COLUMNS: &str = "id, name, description, created_at, updated_at";

/// Waits for the project's other creations of `table` rows, then refuses
/// when it already keeps `limit` of them.
async fn room(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    lock: i32,
    table: &'static str,
    project: i64,
    limit: i64,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, ($2 % 2147483647)::int)")
        .bind(lock)
        .bind(project)
        .execute(&mut **tx)
        .await?;
    let kept: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {table} WHERE project_id = $1"
    ))
    .bind(project)
    .fetch_one(&mut **tx)
    .await?;
    if kept >= limit {
        return Err(StoreError::Full { what: table, limit });
    }
    Ok(())
}

/// Writes `tiles` in order, after checking that each names an insight of
/// `project` (so the error can say which tile).
async fn put_tiles(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    project: i64,
    dashboard: i64,
    tiles: &[Tile],
) -> Result<(), StoreError> {
    if tiles.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = tiles.iter().map(|t| t.insight_id).collect();
    let known: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM insights WHERE project_id = $1 AND id = ANY($2)")
            .bind(project)
            .bind(&ids)
            .fetch_all(&mut **tx)
            .await?;
    if let Some((i, t)) = tiles
        .iter()
        .enumerate()
        .find(|(_, t)| !known.contains(&t.insight_id))
    {
        return Err(StoreError::UnknownInsight {
            field: format!("tiles[{i}].insight_id"),
            insight_id: t.insight_id,
        });
    }
    let positions: Vec<i32> = (0..).take(tiles.len()).collect();
    let widths: Vec<i16> = tiles.iter().map(|t| t.width).collect();
    let heights: Vec<i16> = tiles.iter().map(|t| t.height).collect();
    let written = sqlx::query(
        "INSERT INTO dashboard_tiles (project_id, dashboard_id, position, insight_id, width, height) \
         SELECT $1, $2, * FROM unnest($3::int[], $4::bigint[], $5::smallint[], $6::smallint[])",
    )
    .bind(project)
    .bind(dashboard)
    .bind(&positions)
    .bind(&ids)
    .bind(&widths)
    .bind(&heights)
    .execute(&mut **tx)
    .await;
    match written {
        Ok(_) => Ok(()),
        // An insight deleted since the check above.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(FOREIGN_KEY_VIOLATION) => {
            Err(StoreError::UnknownInsight {
                field: "tiles".to_owned(),
                insight_id: 0,
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn insight_of(row: &PgRow) -> Result<Insight, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(Insight {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        kind: InsightKind::from_name(&kind)
            .ok_or_else(|| StoreError::Unreadable(format!("insight kind {kind:?}")))?,
        query: row.try_get("query")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn tile_of(row: &PgRow) -> Result<Tile, StoreError> {
    Ok(Tile {
        insight_id: row.try_get("insight_id")?,
        width: row.try_get("width")?,
        height: row.try_get("height")?,
    })
}

fn dashboard_of(row: &PgRow, tiles: Vec<Tile>) -> Result<Dashboard, StoreError> {
    Ok(Dashboard {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        tiles,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

//! Runs generated SQL on ClickHouse, with a time limit enforced by the server
//! (`max_execution_time`) and by the client. Errors carry the server's first
//! line, never a stack trace.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clickhouse::Client;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::Value;
use tokio::sync::{Semaphore, SemaphorePermit};
use tributary_core::clickhouse::{ClickHouseSettings, exception_code};
use tributary_core::schema::cluster::{Topology, read_topology};

use crate::answer::Answer;
use crate::funnel::{FunnelPlan, FunnelTally};
use crate::funnel_in_clickhouse::{PROBE_SQL, long_paths_sql, matched_sql};
use crate::native::NativeEventDecoder;
use crate::native::UserKey;
use crate::path_group::PathGrouper;
use crate::rowbinary::{DecodeError, PathDecoder, Widths};
use crate::rows::{FunnelGroupRow, PathRow, number};

/// Why a query produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarehouseError {
    #[error("ClickHouse did not answer within {0} s")]
    Timeout(u64),
    #[error("ClickHouse at {url} is unreachable: {message}")]
    Unavailable { url: String, message: String },
    #[error("ClickHouse refused the query (code {code}): {message}")]
    Rejected { code: u32, message: String },
    #[error("ClickHouse's answer could not be read: {0}")]
    Unreadable(String),
    /// A shard of the cluster did not answer: the answer would count only
    /// the other shards' events, so there is none. `shard` is `None` when
    /// the error names no server of the cluster known here.
    #[error("shard {} of ClickHouse cluster {cluster} is unreachable: {message}", .shard.map_or("?".to_owned(), |s| s.to_string()))]
    ShardUnavailable {
        cluster: String,
        shard: Option<u32>,
        message: String,
    },
}

/// Which paths a funnel statement returns, and which of them to count;
/// users are named by `K` (distinct ids, or [`UserKey`]s).
enum Paths<K> {
    /// As stored: paths that may hold copies are set aside.
    AsStored,
    /// De-duplicated by `uuid`: all of them, or only the users named.
    Unique(Option<HashSet<K>>),
}

impl<K: Eq + std::hash::Hash> Paths<K> {
    /// Counts the path `row` of user `user` into `tally`, or, read as
    /// stored with events that may be copies, sets `user` aside in `again`.
    fn count(&self, tally: &mut FunnelTally, user: K, row: &PathRow, again: &mut Vec<K>) {
        match self {
            Paths::AsStored => {
                if !tally.add(row) {
                    again.push(user);
                }
            }
            Paths::Unique(None) => tally.add_unique(row),
            Paths::Unique(Some(wanted)) => {
                if wanted.contains(&user) {
                    tally.add_unique(row);
                }
            }
        }
    }
}

/// Where a funnel's events were grouped into users' paths: `service`, or
/// `clickhouse` when the service's event budget was in use.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupingLabels {
    pub grouped_by: &'static str,
}

/// A ClickHouse server holding the `events` table.
#[derive(Clone)]
pub struct Warehouse {
    client: Client,
    url: String,
    database: String,
    /// `url/database`, what cached answers are keyed by.
    source: String,
    timeout: Duration,
    /// Funnel events this process may hold at once, shared by the funnels
    /// running (see [`Self::with_funnel_budget`]).
    funnel_budget: Arc<Semaphore>,
    /// Permits taken from `funnel_budget` at a time.
    funnel_grant: u32,
    funnel_grouping: Family<GroupingLabels, Counter>,
    /// `QUERY_CLICKHOUSE_CLUSTER`, and its shards as last read (by
    /// [`Self::ping`]), to name a shard that does not answer.
    cluster: Option<String>,
    topology: Arc<RwLock<Option<Topology>>>,
    /// The settings it was made from, to reach each shard's own server.
    settings: ClickHouseSettings,
    /// Whether the server can match funnels itself (see [`Self::ping`]).
    matching: Arc<AtomicU8>,
}

/// Values of [`Warehouse::matching`].
const MATCHING_UNKNOWN: u8 = 0;
const MATCHING_IN_CLICKHOUSE: u8 = 1;
const MATCHING_HERE: u8 = 2;

/// ClickHouse's code for "unknown function".
const UNKNOWN_FUNCTION: u32 = 46;

/// Default of [`Warehouse::with_funnel_budget`]: 320 MB at 32 bytes per
/// event, up to twice that while the arrays grow.
pub const DEFAULT_FUNNEL_EVENTS: usize = 10_000_000;

/// Threads matching the paths grouped here.
const MATCHERS: usize = 2;

/// The server's own limit on a query: a margin (a tenth, 1 to 5 s) under
/// `timeout`, so a query that runs too long is stopped by ClickHouse and
/// its answer arrives within `timeout`; at least a second.
pub fn server_limit(timeout: Duration) -> Duration {
    let margin = (timeout / 10).clamp(Duration::from_secs(1), Duration::from_secs(5));
    Duration::from_secs(timeout.saturating_sub(margin).as_secs().max(1))
}

/// ClickHouse's code for "timeout exceeded".
const TIMEOUT_EXCEEDED: u32 = 159;

/// ClickHouse's codes for a server it could not reach: SOCKET_TIMEOUT,
/// NETWORK_ERROR, ALL_CONNECTION_TRIES_FAILED. From the server asked, on a
/// cluster, they mean a shard it asked in turn.
const SHARD_UNREACHABLE: [u32; 3] = [209, 210, 279];

impl Warehouse {
    pub fn new(settings: &ClickHouseSettings, timeout: Duration) -> Self {
        let (funnel_budget, funnel_grant) = budget(DEFAULT_FUNNEL_EVENTS);
        Self {
            client: settings.client(),
            url: settings.url(),
            database: settings.database.clone(),
            source: format!("{}/{}", settings.url(), settings.database),
            timeout,
            funnel_budget,
            funnel_grant,
            funnel_grouping: Family::default(),
            cluster: settings.cluster.clone(),
            topology: Arc::new(RwLock::new(None)),
            settings: settings.clone(),
            matching: Arc::new(AtomicU8::new(MATCHING_UNKNOWN)),
        }
    }

    /// Funnel events this process may hold at once, shared by the funnels
    /// running ([`crate::path_group::BYTES_PER_EVENT`] bytes each, up to
    /// twice that while arrays grow). A funnel groups its events into
    /// users' paths here while they stream in, sooner done than ClickHouse
    /// grouping them (1.6 s instead of 2.1 s on the benchmark); when the
    /// budget runs out it lets ClickHouse group them instead. 0: always
    /// ClickHouse.
    pub fn with_funnel_budget(mut self, events: usize) -> Self {
        (self.funnel_budget, self.funnel_grant) = budget(events);
        self
    }

    /// Whether a ClickHouse that can match funnels may (`true`, the
    /// default), or funnels are always matched here.
    pub fn with_funnel_matching_in_clickhouse(self, allowed: bool) -> Self {
        if !allowed {
            self.matching.store(MATCHING_HERE, Ordering::Relaxed);
        }
        self
    }

    /// Up to `funnel_grant` more permits of the budget, as many as are
    /// left; `None` when none are.
    fn take_budget(&self) -> Option<SemaphorePermit<'_>> {
        let left = u32::try_from(self.funnel_budget.available_permits()).unwrap_or(u32::MAX);
        match self.funnel_grant.min(left) {
            0 => None,
            n => self.funnel_budget.try_acquire_many(n).ok(),
        }
    }

    /// Funnels by where their paths were grouped, to register as a metric.
    pub fn funnel_grouping(&self) -> Family<GroupingLabels, Counter> {
        self.funnel_grouping.clone()
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The server and database read, as one name: what a cached answer
    /// came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn query(&self, sql: &str) -> clickhouse::query::Query {
        self.client.query_raw(sql).with_setting(
            "max_execution_time",
            server_limit(self.timeout).as_secs().to_string(),
        )
    }

    /// How long a caller waits for an answer: `QUERY_TIMEOUT_SECS`, however
    /// the server behaves (a stalled one included).
    fn deadline(&self) -> Duration {
        self.timeout
    }

    fn error(&self, e: clickhouse::error::Error) -> WarehouseError {
        match &e {
            clickhouse::error::Error::BadResponse(text) => {
                let code = exception_code(&e).unwrap_or(0);
                if code == TIMEOUT_EXCEEDED {
                    return WarehouseError::Timeout(self.timeout.as_secs());
                }
                if let Some(cluster) = &self.cluster
                    && SHARD_UNREACHABLE.contains(&code)
                {
                    let shard = self
                        .topology
                        .read()
                        .ok()
                        .and_then(|t| t.as_ref().map(|t| t.shards_named(text)))
                        .and_then(|shards| shards.first().copied());
                    return WarehouseError::ShardUnavailable {
                        cluster: cluster.clone(),
                        shard,
                        message: first_line(text),
                    };
                }
                WarehouseError::Rejected {
                    code,
                    message: first_line(text),
                }
            }
            clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut => {
                WarehouseError::Unavailable {
                    url: self.url.clone(),
                    message: e.to_string(),
                }
            }
            _ => WarehouseError::Unreadable(e.to_string()),
        }
    }

    /// Rows of a result as JSON values (`JSONCompact`).
    pub async fn rows(&self, sql: &str) -> Result<Vec<Vec<Value>>, WarehouseError> {
        self.rows_of(self.query(sql)).await
    }

    /// [`Self::rows`] of a statement whose reads of the Distributed table
    /// each shard answers whole (`distributed_group_by_no_merge`): the
    /// node asked only combines the shards' rows in the outer statement.
    pub async fn rows_per_shard(&self, sql: &str) -> Result<Vec<Vec<Value>>, WarehouseError> {
        self.rows_of(
            self.query(sql)
                .with_setting("distributed_group_by_no_merge", "1"),
        )
        .await
    }

    async fn rows_of(
        &self,
        query: clickhouse::query::Query,
    ) -> Result<Vec<Vec<Value>>, WarehouseError> {
        let run = async {
            let mut answer = query
                .fetch_bytes("JSONCompact")
                .map(Answer::new)
                .map_err(|e| self.error(e))?;
            let mut bytes = Vec::new();
            while let Some(chunk) = answer.next().await.map_err(|e| self.error(e))? {
                bytes.extend_from_slice(&chunk);
            }
            answer.end().await.map_err(|e| self.error(e))?;
            let body: Value = serde_json::from_slice(&bytes)
                .map_err(|e| WarehouseError::Unreadable(e.to_string()))?;
            let rows = body["data"]
                .as_array()
                .ok_or_else(|| WarehouseError::Unreadable("no data in the answer".into()))?
                .iter()
                .map(|r| r.as_array().cloned().unwrap_or_default())
                .collect();
            Ok(rows)
        };
        tokio::time::timeout(self.deadline(), run)
            .await
            .map_err(|_| WarehouseError::Timeout(self.timeout.as_secs()))?
    }

    /// Every series of a trend, with its follow-up statement where it has
    /// one, the series side by side.
    pub async fn trend(
        &self,
        plan: &crate::trend::TrendPlan,
    ) -> Result<Vec<crate::trend::SeriesRows>, WarehouseError> {
        let runs = plan.series.iter().map(|s| async move {
            // On a cluster, on each shard.
            if self.cluster.is_some() {
                let rows = self.rows_per_shard(&s.per_shard.sql).await?;
                let other = match s.follow_up_per_shard(&rows) {
                    Some(sql) => Some(self.rows_per_shard(&sql).await?),
                    None => None,
                };
                return Ok(crate::trend::SeriesRows { rows, other });
            }
            let rows = self.rows(&s.sql).await?;
            let other = match s.follow_up(&rows) {
                Some(sql) => Some(self.rows(&sql).await?),
                None => None,
            };
            Ok(crate::trend::SeriesRows { rows, other })
        });
        futures::future::try_join_all(runs).await
    }

    /// A funnel's answer: its events grouped into users' paths here when
    /// the budget allows, by ClickHouse otherwise. On a cluster whose shards
    /// are known, each shard's own table is read and matched on its own, and
    /// only the counts are merged: a user's events are all on one shard.
    pub async fn funnel(&self, plan: &FunnelPlan) -> Result<Value, WarehouseError> {
        if let Some(shards) = self.shards() {
            let on_shard = plan.on_shard();
            let tallies = self
                .per_shard(&shards, |server| {
                    let plan = &on_shard;
                    async move { server.funnel_tally(plan).await }
                })
                .await?;
            let mut tallies = tallies.into_iter();
            let Some(mut tally) = tallies.next() else {
                return Ok(FunnelTally::new(plan).answer());
            };
            for other in tallies {
                tally.merge(other);
            }
            return Ok(tally.answer());
        }
        Ok(self.funnel_tally(plan).await?.answer())
    }

    async fn funnel_tally(&self, plan: &FunnelPlan) -> Result<FunnelTally, WarehouseError> {
        if self.matching.load(Ordering::Relaxed) == MATCHING_IN_CLICKHOUSE {
            match self.funnel_matched_by_clickhouse(plan).await {
                // A server older than the one probed (a shard not yet
                // upgraded): matched here from now on.
                Err(WarehouseError::Rejected {
                    code: UNKNOWN_FUNCTION,
                    message,
                }) => {
                    tracing::warn!(%message, url = %self.url, "ClickHouse cannot match funnels; matching them here");
                    self.matching.store(MATCHING_HERE, Ordering::Relaxed);
                }
                other => {
                    self.count_grouping("matched_in_clickhouse");
                    return other;
                }
            }
        }
        if let Some(tally) = self.funnel_grouped_here(plan).await? {
            self.count_grouping("service");
            return Ok(tally);
        }
        self.count_grouping("clickhouse");
        self.funnel_grouped_by_clickhouse(plan).await
    }

    /// Each shard's replicas' hosts, shard by shard, when this is a cluster
    /// whose shards were read.
    fn shards(&self) -> Option<Vec<(u32, Vec<String>)>> {
        self.cluster.as_ref()?;
        let known = self.topology.read().ok()?;
        let topology = known.as_ref()?;
        Some(
            (1..=topology.shards())
                .map(|shard| {
                    let hosts = topology
                        .nodes
                        .iter()
                        .filter(|n| n.shard == shard)
                        .map(|n| n.host.clone())
                        .collect();
                    (shard, hosts)
                })
                .collect(),
        )
    }

    /// `work` done on every shard at once, each with this warehouse pointed
    /// at that shard's own server.
    async fn per_shard<T, F, Fut>(
        &self,
        shards: &[(u32, Vec<String>)],
        work: F,
    ) -> Result<Vec<T>, WarehouseError>
    where
        F: Fn(Warehouse) -> Fut,
        Fut: std::future::Future<Output = Result<T, WarehouseError>>,
    {
        let runs = shards
            .iter()
            .map(|(shard, hosts)| self.on_shard(*shard, hosts, &work));
        futures::future::try_join_all(runs).await
    }

    /// `work` on one shard, on the first of its replicas that answers; a
    /// shard none of whose replicas does is named.
    async fn on_shard<T, F, Fut>(
        &self,
        shard: u32,
        hosts: &[String],
        work: &F,
    ) -> Result<T, WarehouseError>
    where
        F: Fn(Warehouse) -> Fut,
        Fut: std::future::Future<Output = Result<T, WarehouseError>>,
    {
        let mut last = None;
        for host in hosts {
            let server = Self {
                client: self.settings.on_host(host).client(),
                url: self.settings.on_host(host).url(),
                cluster: None,
                ..self.clone()
            };
            match work(server).await {
                Err(e @ WarehouseError::Unavailable { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(WarehouseError::ShardUnavailable {
            cluster: self.cluster.clone().unwrap_or_default(),
            shard: Some(shard),
            message: last.map_or_else(|| "no replica listed".to_owned(), |e| e.to_string()),
        })
    }

    /// A retention table's rows: on a cluster whose shards are known, each
    /// shard's own cohorts (its users' whole history is there), the cells
    /// adding up across shards.
    pub async fn retention(
        &self,
        plan: &crate::retention::RetentionPlan,
    ) -> Result<Vec<Vec<Value>>, WarehouseError> {
        let Some(shards) = self.shards() else {
            return self.rows(&plan.sql).await;
        };
        let rows = self
            .per_shard(&shards, |server| {
                let sql = &plan.sql_on_shard;
                async move { server.rows(sql).await }
            })
            .await?;
        Ok(rows.into_iter().flatten().collect())
    }

    fn count_grouping(&self, grouped_by: &'static str) {
        self.funnel_grouping
            .get_or_create(&GroupingLabels { grouped_by })
            .inc();
    }

    /// Every user's path grouped here and matched, then the paths that may
    /// hold copies of an event read again by `uuid`. `None` when the budget
    /// ran out on the way.
    async fn funnel_grouped_here(
        &self,
        plan: &FunnelPlan,
    ) -> Result<Option<FunnelTally>, WarehouseError> {
        let Some((paths, held)) = self.group_events(plan, &plan.events_sql(), None).await? else {
            return Ok(None);
        };
        // The paths are gone once matched; their permits go on to the copies
        // pass, which must not find the budget taken meanwhile.
        let (mut tally, again) = match_grouped(plan, paths, Paths::AsStored).await?;
        if again.is_empty() {
            return Ok(Some(tally));
        }
        let sql = plan
            .event_copies_sql(&again)
            .unwrap_or_else(|| plan.all_event_copies_sql());
        let Some((paths, held)) = self.group_events(plan, &sql, Some(held)).await? else {
            return Ok(None);
        };
        let wanted = Paths::Unique(Some(again.into_iter().collect()));
        // The users read again were not counted by the first pass.
        tally.merge(match_grouped(plan, paths, wanted).await?.0);
        drop(held);
        Ok(Some(tally))
    }

    /// The events `sql` returns grouped by user as they arrive, with the
    /// budget permits they hold (starting from `held`, when given); `None`
    /// when the budget ran out first.
    async fn group_events<'w>(
        &'w self,
        plan: &FunnelPlan,
        sql: &str,
        held: Option<SemaphorePermit<'w>>,
    ) -> Result<Option<(PathGrouper, SemaphorePermit<'w>)>, WarehouseError> {
        let Some(mut held) = held.or_else(|| self.take_budget()) else {
            return Ok(None);
        };
        let read = async {
            let mut answer = self.answer(sql, "Native")?;
            let mut decoder = NativeEventDecoder::new(plan.event_shape());
            let mut grouper = PathGrouper::default();
            while let Some(chunk) = answer.next().await.map_err(|e| self.error(e))? {
                if let Err(e) = decoder.push(&chunk, |event| grouper.add(&event)) {
                    return Err(self.unreadable(answer, e).await);
                }
                while grouper.events() > held.num_permits() {
                    let Some(more) = self.take_budget() else {
                        tracing::info!(
                            events = grouper.events(),
                            "funnel events past the budget (QUERY_FUNNEL_LOCAL_EVENTS): grouped by ClickHouse instead"
                        );
                        // Dropping the answer closes the connection, which
                        // stops the statement.
                        return Ok(None);
                    };
                    held.merge(more);
                }
            }
            answer.end().await.map_err(|e| self.error(e))?;
            decoder.finish().map_err(unreadable)?;
            Ok(Some(grouper))
        };
        let grouper = tokio::time::timeout(self.deadline(), read)
            .await
            .map_err(|_| WarehouseError::Timeout(self.timeout.as_secs()))??;
        Ok(grouper.map(|g| (g, held)))
    }

    /// The funnel matched by ClickHouse: only users per step and their
    /// times to convert arrive, per breakdown value.
    async fn funnel_matched_by_clickhouse(
        &self,
        plan: &FunnelPlan,
    ) -> Result<FunnelTally, WarehouseError> {
        let groups = self.rows(&matched_sql(plan)).await?;
        self.funnel_of_groups(plan, groups).await
    }

    /// The tally of `groups`, rows of [`matched_sql`], and of the paths too
    /// long to be matched by ClickHouse, read from this server and matched
    /// here when the groups say there are some.
    pub async fn funnel_of_groups(
        &self,
        plan: &FunnelPlan,
        groups: Vec<Vec<Value>>,
    ) -> Result<FunnelTally, WarehouseError> {
        let mut tally = FunnelTally::new(plan);
        let mut long_users = 0;
        for row in groups {
            let group = FunnelGroupRow::from_json(&row).ok_or_else(|| {
                WarehouseError::Unreadable(format!("not a funnel group: {row:?}"))
            })?;
            long_users += group.long_users;
            tally.add_group(group);
        }
        if long_users == 0 {
            return Ok(tally);
        }
        let (tally, _) = self
            .match_paths(
                &long_paths_sql(plan),
                plan.widths(),
                tally,
                Paths::Unique(None),
            )
            .await?;
        Ok(tally)
    }

    /// Whether funnels are matched by ClickHouse (`Some(true)`), here
    /// (`Some(false)`), or not known until the server was asked.
    pub fn matches_funnels_in_clickhouse(&self) -> Option<bool> {
        match self.matching.load(Ordering::Relaxed) {
            MATCHING_IN_CLICKHOUSE => Some(true),
            MATCHING_HERE => Some(false),
            _ => None,
        }
    }

    /// Asks the server, once it answers, whether it can match funnels.
    async fn probe_matching(&self) {
        if self.matching.load(Ordering::Relaxed) != MATCHING_UNKNOWN {
            return;
        }
        let found = match self.rows(PROBE_SQL).await {
            Ok(rows) => rows.first().and_then(|r| r.first()).and_then(number) == Some(3.0),
            Err(WarehouseError::Rejected { .. }) => false,
            Err(_) => return,
        };
        tracing::info!(url = %self.url, in_clickhouse = found, "where funnels are matched");
        self.matching.store(
            if found {
                MATCHING_IN_CLICKHOUSE
            } else {
                MATCHING_HERE
            },
            Ordering::Relaxed,
        );
    }

    /// Every user's path read as ClickHouse grouped it, and the paths that
    /// may hold copies of an event read again by `uuid`.
    async fn funnel_grouped_by_clickhouse(
        &self,
        plan: &FunnelPlan,
    ) -> Result<FunnelTally, WarehouseError> {
        let widths = plan.widths();
        let tally = FunnelTally::new(plan);
        let (tally, again) = self
            .match_paths(&plan.sql(), widths, tally, Paths::AsStored)
            .await?;
        if again.is_empty() {
            return Ok(tally);
        }
        let (tally, _) = match plan.copies_sql(&again) {
            Some(sql) => {
                self.match_paths(&sql, widths, tally, Paths::Unique(None))
                    .await?
            }
            None => {
                let sql = plan.all_copies_sql();
                let wanted = again.into_iter().collect();
                self.match_paths(&sql, widths, tally, Paths::Unique(Some(wanted)))
                    .await?
            }
        };
        Ok(tally)
    }

    /// Streams the paths `sql` returns to a thread matching them while the
    /// next ones arrive. Answers the tally and, when reading paths as
    /// stored, the users whose paths must be read again.
    async fn match_paths(
        &self,
        sql: &str,
        widths: Widths,
        mut tally: FunnelTally,
        paths: Paths<String>,
    ) -> Result<(FunnelTally, Vec<String>), WarehouseError> {
        const BATCH: usize = 512;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<PathRow>>(8);
        let matcher = tokio::task::spawn_blocking(move || {
            let mut again = Vec::new();
            while let Some(batch) = rx.blocking_recv() {
                for mut row in batch {
                    let user = std::mem::take(&mut row.distinct_id);
                    paths.count(&mut tally, user, &row, &mut again);
                }
            }
            (tally, again)
        });
        let read = async {
            let mut answer = self.answer(sql, "RowBinary")?;
            let mut decoder = PathDecoder::new(widths);
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(chunk) = answer.next().await.map_err(|e| self.error(e))? {
                decoder.push(&chunk);
                loop {
                    let row = match decoder.next_row() {
                        Ok(Some(row)) => row,
                        Ok(None) => break,
                        Err(e) => return Err(self.unreadable(answer, e).await),
                    };
                    batch.push(row);
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        if tx.send(full).await.is_err() {
                            // The matcher stopped; joining it says why.
                            return Ok(());
                        }
                    }
                }
            }
            answer.end().await.map_err(|e| self.error(e))?;
            decoder.finish().map_err(unreadable)?;
            if !batch.is_empty() {
                let _ = tx.send(batch).await;
            }
            drop(tx);
            Ok::<_, WarehouseError>(())
        };
        tokio::time::timeout(self.deadline(), read)
            .await
            .map_err(|_| WarehouseError::Timeout(self.timeout.as_secs()))??;
        matcher.await.map_err(matching_failed)
    }

    /// `sql`'s answer in `format`, as it streams in.
    fn answer(&self, sql: &str, format: &str) -> Result<Answer, WarehouseError> {
        self.query(sql)
            .fetch_bytes(format)
            .map(Answer::new)
            .map_err(|e| self.error(e))
    }

    /// Why rows of `answer` could not be read: the error the server
    /// appended to it, or else `e`.
    async fn unreadable(&self, answer: Answer, e: DecodeError) -> WarehouseError {
        match answer.end().await {
            Err(server) => self.error(server),
            Ok(()) => unreadable(e),
        }
    }

    /// Whether the server answers and the events table exists; on a
    /// cluster, reads its shards again too.
    pub async fn ping(&self) -> Result<(), WarehouseError> {
        if let Some(cluster) = &self.cluster {
            match read_topology(&self.client, &self.url, cluster).await {
                Ok(topology) => {
                    if let Ok(mut known) = self.topology.write() {
                        *known = Some(topology);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the cluster's shards"),
            }
        }
        let sql = format!(
            "SELECT count() FROM system.tables WHERE database = {} AND name = 'events'",
            crate::sql::string(&self.database)
        );
        let rows = tokio::time::timeout(Duration::from_secs(3), self.rows(&sql))
            .await
            .map_err(|_| WarehouseError::Timeout(3))??;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.probe_matching()).await;
        match rows.first().and_then(|r| r.first()).map(number) {
            Some(Some(n)) if n >= 1.0 => Ok(()),
            _ => Err(WarehouseError::Unreadable(format!(
                "table {}.events does not exist (run `tributary migrate`)",
                self.database
            ))),
        }
    }
}

/// A budget of `events` funnel events and the permits taken at a time.
fn budget(events: usize) -> (Arc<Semaphore>, u32) {
    let events = events.min(Semaphore::MAX_PERMITS);
    let grant = u32::try_from(events).unwrap_or(u32::MAX).min(1 << 16);
    (Arc::new(Semaphore::new(events)), grant)
}

fn unreadable(e: DecodeError) -> WarehouseError {
    WarehouseError::Unreadable(e.to_string())
}

fn matching_failed(e: tokio::task::JoinError) -> WarehouseError {
    WarehouseError::Unreadable(format!("funnel matching failed: {e}"))
}

/// Matches paths grouped here, as `paths` says, on [`MATCHERS`] threads,
/// each taking a share of the users; answers the tally and the users whose
/// paths must be read again by `uuid`.
async fn match_grouped(
    plan: &FunnelPlan,
    grouper: PathGrouper,
    paths: Paths<UserKey>,
) -> Result<(FunnelTally, Vec<UserKey>), WarehouseError> {
    let paths = Arc::new(paths);
    let runs = grouper.finish(MATCHERS).into_iter().map(|share| {
        let mut tally = FunnelTally::new(plan);
        let paths = Arc::clone(&paths);
        tokio::task::spawn_blocking(move || {
            let mut again = Vec::new();
            share.for_each(|user, row| paths.count(&mut tally, user, row, &mut again));
            (tally, again)
        })
    });
    let mut tally = FunnelTally::new(plan);
    let mut again = Vec::new();
    for run in futures::future::join_all(runs).await {
        let (part, part_again) = run.map_err(matching_failed)?;
        tally.merge(part);
        again.extend(part_again);
    }
    Ok((tally, again))
}

/// The first line of a server error, without `e.what()` and stack traces.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text);
    let line = line.split(", e.what()").next().unwrap_or(line);
    let line = line.split(" Stack trace").next().unwrap_or(line);
    line.chars().take(500).collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_server_stops_a_query_before_the_caller_gives_up() {
        let secs = |t: u64| server_limit(Duration::from_secs(t)).as_secs();
        assert_eq!(secs(60), 55);
        assert_eq!(secs(10), 9);
        assert_eq!(secs(2), 1);
        assert_eq!(secs(1), 1, "at least a second");
        assert_eq!(secs(300), 295);
    }
    use super::*;

    #[test]
    fn funnel_matching_can_be_kept_here_before_the_server_is_asked() {
        let settings = ClickHouseSettings::from_env(
            &tributary_core::config::Env::new(&[("QUERY_CLICKHOUSE_HOST", "127.0.0.1")]),
            "QUERY",
        )
        .unwrap();
        let wh = Warehouse::new(&settings, Duration::from_secs(5));
        assert_eq!(wh.matches_funnels_in_clickhouse(), None, "not asked yet");
        let wh = wh.with_funnel_matching_in_clickhouse(false);
        assert_eq!(wh.matches_funnels_in_clickhouse(), Some(false));
    }

    #[test]
    fn server_errors_lose_their_stack_traces() {
        let t = "Code: 47, e.displayText() = DB::Exception: Unknown identifier: x, e.what() = DB::Exception\n\nStack trace:\n0. clickhouse-server";
        assert_eq!(
            first_line(t),
            "Code: 47, e.displayText() = DB::Exception: Unknown identifier: x"
        );
    }

    #[test]
    fn numbers_arrive_quoted_or_not() {
        assert_eq!(number(&Value::from(3)), Some(3.0));
        assert_eq!(number(&Value::from("12")), Some(12.0));
        assert_eq!(number(&Value::from("x")), None);
    }
}

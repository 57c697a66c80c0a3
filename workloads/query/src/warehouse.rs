//! Runs generated SQL on ClickHouse, with a time limit enforced by the server
//! (`max_execution_time`) and by the client. Errors carry the server's first
//! line, never a stack trace.

use std::collections::HashSet;
use std::time::Duration;

use clickhouse::Client;
use serde_json::Value;
use tributary_core::clickhouse::{ClickHouseSettings, exception_code};

use crate::funnel::{FunnelPlan, FunnelTally};
use crate::rowbinary::{DecodeError, PathDecoder, Widths};

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
}

/// One user's events for funnel matching: times, step masks, exclusion
/// masks and the breakdown label of each event. Times are milliseconds:
/// since the epoch, or since the range's start for ranges shorter than 49
/// days (sent as `u32`, half the bytes to group and send). See
/// [`crate::rowbinary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRow {
    pub distinct_id: String,
    pub times: Vec<u64>,
    pub steps: Vec<u16>,
    pub exclusions: Vec<u16>,
    pub labels: Vec<String>,
}

/// Which paths a funnel statement returns, and which of them to count.
enum Paths {
    /// As stored: paths that may hold copies are set aside.
    AsStored,
    /// De-duplicated by `uuid`: all of them, or only the users named.
    Unique(Option<HashSet<String>>),
}

/// A ClickHouse server holding the `events` table.
#[derive(Clone)]
pub struct Warehouse {
    client: Client,
    url: String,
    database: String,
    timeout: Duration,
}

/// ClickHouse's code for "timeout exceeded".
const TIMEOUT_EXCEEDED: u32 = 159;

impl Warehouse {
    pub fn new(settings: &ClickHouseSettings, timeout: Duration) -> Self {
        Self {
            client: settings.client(),
            url: settings.url(),
            database: settings.database.clone(),
            timeout,
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    fn query(&self, sql: &str) -> clickhouse::query::Query {
        self.client.query_raw(sql).with_setting(
            "max_execution_time",
            self.timeout.as_secs().max(1).to_string(),
        )
    }

    /// The server's limit plus a margin for the answer to arrive.
    fn deadline(&self) -> Duration {
        self.timeout + Duration::from_secs(5)
    }

    fn error(&self, e: clickhouse::error::Error) -> WarehouseError {
        match &e {
            clickhouse::error::Error::BadResponse(text) => {
                let code = exception_code(&e).unwrap_or(0);
                if code == TIMEOUT_EXCEEDED {
                    return WarehouseError::Timeout(self.timeout.as_secs());
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
        let run = async {
            let mut cursor = self
                .query(sql)
                .fetch_bytes("JSONCompact")
                .map_err(|e| self.error(e))?;
            let bytes = cursor.collect().await.map_err(|e| self.error(e))?;
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
            let rows = self.rows(&s.sql).await?;
            let other = match s.follow_up(&rows) {
                Some(sql) => Some(self.rows(&sql).await?),
                None => None,
            };
            Ok(crate::trend::SeriesRows { rows, other })
        });
        futures::future::try_join_all(runs).await
    }

    /// A funnel's answer: every user's path read as it is stored, and the
    /// paths that may hold copies of an event read again by `uuid`.
    pub async fn funnel(&self, plan: &FunnelPlan) -> Result<Value, WarehouseError> {
        let widths = plan.widths();
        let tally = FunnelTally::new(plan);
        let (tally, again) = self
            .match_paths(&plan.sql(), widths, tally, Paths::AsStored)
            .await?;
        if again.is_empty() {
            return Ok(tally.answer());
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
        Ok(tally.answer())
    }

    /// Streams the paths `sql` returns to a thread matching them while the
    /// next ones arrive. Answers the tally and, when reading paths as
    /// stored, the users whose paths must be read again.
    async fn match_paths(
        &self,
        sql: &str,
        widths: Widths,
        mut tally: FunnelTally,
        paths: Paths,
    ) -> Result<(FunnelTally, Vec<String>), WarehouseError> {
        const BATCH: usize = 512;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<PathRow>>(8);
        let matcher = tokio::task::spawn_blocking(move || {
            let mut again = Vec::new();
            while let Some(batch) = rx.blocking_recv() {
                for row in batch {
                    match &paths {
                        Paths::AsStored => {
                            if !tally.add(&row) {
                                again.push(row.distinct_id);
                            }
                        }
                        Paths::Unique(None) => tally.add_unique(&row),
                        Paths::Unique(Some(wanted)) => {
                            if wanted.contains(&row.distinct_id) {
                                tally.add_unique(&row);
                            }
                        }
                    }
                }
            }
            (tally, again)
        });
        let read = async {
            let mut cursor = self
                .query(sql)
                .fetch_bytes("RowBinary")
                .map_err(|e| self.error(e))?;
            let mut decoder = PathDecoder::new(widths);
            let mut batch = Vec::with_capacity(BATCH);
            let unreadable = |e: DecodeError| WarehouseError::Unreadable(e.to_string());
            'read: while let Some(chunk) = cursor.next().await.map_err(|e| self.error(e))? {
                decoder.push(&chunk);
                while let Some(row) = decoder.next_row().map_err(unreadable)? {
                    batch.push(row);
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        if tx.send(full).await.is_err() {
                            break 'read;
                        }
                    }
                }
            }
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
        matcher
            .await
            .map_err(|e| WarehouseError::Unreadable(format!("funnel matching failed: {e}")))
    }

    /// Whether the server answers and the events table exists.
    pub async fn ping(&self) -> Result<(), WarehouseError> {
        let sql = format!(
            "SELECT count() FROM system.tables WHERE database = {} AND name = 'events'",
            crate::sql::string(&self.database)
        );
        let rows = tokio::time::timeout(Duration::from_secs(3), self.rows(&sql))
            .await
            .map_err(|_| WarehouseError::Timeout(3))??;
        match rows.first().and_then(|r| r.first()).map(number) {
            Some(Some(n)) if n >= 1.0 => Ok(()),
            _ => Err(WarehouseError::Unreadable(format!(
                "table {}.events does not exist (run `tributary migrate`)",
                self.database
            ))),
        }
    }
}

/// The first line of a server error, without `e.what()` and stack traces.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text);
    let line = line.split(", e.what()").next().unwrap_or(line);
    let line = line.split(" Stack trace").next().unwrap_or(line);
    line.chars().take(500).collect()
}

/// A JSON number, or a number in a string (ClickHouse quotes 64-bit integers).
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

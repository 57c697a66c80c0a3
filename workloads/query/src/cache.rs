//! Redis: cached answers and async jobs.
//!
//! - Answers live under `tributary:query:v1:result:{project}:{kind}:{sha256}`
//!   where the hash is over the normalised request (its parsed form, so
//!   key order and whitespace do not matter), for `QUERY_CACHE_TTL_SECS`.
//! - Jobs live under `tributary:query:v1:job:{id}` for `QUERY_JOB_TTL_SECS`:
//!   `{"status": "running"|"complete"|"failed", "project_id", "kind",
//!   "created_at", "deadline", "result"|"error"}`. A job still "running"
//!   after its deadline was lost (its process stopped) and reads as failed.
//!
//! Redis being down never fails a synchronous query: the cache is skipped
//! (and counted). Async jobs need Redis and are refused with 503.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Redis is unavailable: {0}")]
pub struct CacheError(pub String);

const PREFIX: &str = "tributary:query:v1";
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// The cache key of a request of `kind` in `project`, read from `source`
/// (the ClickHouse server and database: pipelines sharing a Redis, or one
/// moved to another database, must not answer from each other's results).
pub fn result_key(source: &str, project: u64, kind: &str, normalised: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    hasher.update(b"\n");
    hasher.update(normalised.to_string().as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}:result:{project}:{kind}:{hex}")
}

pub fn job_key(id: &str) -> String {
    format!("{PREFIX}:job:{id}")
}

pub struct Cache {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    pub ttl: Duration,
    pub job_ttl: Duration,
}

impl Cache {
    pub fn new(url: &str, ttl: Duration, job_ttl: Duration) -> Result<Self, CacheError> {
        let client = redis::Client::open(url).map_err(|e| CacheError(format!("REDIS_URL: {e}")))?;
        Ok(Self {
            client,
            conn: Mutex::new(None),
            ttl,
            job_ttl,
        })
    }

    /// A connection, made on first use and after a failure.
    async fn connection(&self) -> Result<MultiplexedConnection, CacheError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(OP_TIMEOUT, self.client.get_multiplexed_async_connection())
            .await
            .map_err(|_| CacheError("connect timed out".into()))?
            .map_err(|e| CacheError(e.to_string()))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn forget(&self) {
        *self.conn.lock().await = None;
    }

    async fn run<T, F, Fut>(&self, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        match tokio::time::timeout(OP_TIMEOUT, op(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.forget().await;
                Err(CacheError(e.to_string()))
            }
            Err(_) => {
                self.forget().await;
                Err(CacheError("operation timed out".into()))
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Value>, CacheError> {
        let text: Option<String> = self.run(|mut c| async move { c.get(key).await }).await?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    pub async fn put(&self, key: &str, value: &Value, ttl: Duration) -> Result<(), CacheError> {
        if ttl.is_zero() {
            return Ok(());
        }
        let text = value.to_string();
        self.run(|mut c| async move { c.set_ex::<_, _, ()>(key, text, ttl.as_secs()).await })
            .await
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }
}

/// What a stored job says, with a lost job turned into a failure.
pub fn job_view(mut job: Value, now_ms: i64) -> Value {
    let running = job["status"] == "running";
    let past = job["deadline_ms"].as_i64().is_some_and(|d| now_ms > d);
    if running && past {
        job["status"] = "failed".into();
        job["error"] = serde_json::json!({
            "error": "job_lost",
            "message": "the query service running this job stopped before it finished; submit the query again",
        });
    }
    if let Some(o) = job.as_object_mut() {
        o.remove("deadline_ms");
        o.remove("project_id");
    }
    job
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_depend_on_source_project_kind_and_query() {
        let q = json!({"a": 1});
        let s = "http://clickhouse:8123/tributary";
        assert_ne!(result_key(s, 1, "trend", &q), result_key(s, 2, "trend", &q));
        assert_ne!(
            result_key(s, 1, "trend", &q),
            result_key(s, 1, "funnel", &q)
        );
        assert_ne!(
            result_key(s, 1, "trend", &q),
            result_key(s, 1, "trend", &json!({"a": 2}))
        );
        assert_ne!(
            result_key(s, 1, "trend", &q),
            result_key("http://clickhouse:8123/staging", 1, "trend", &q),
            "another database"
        );
        assert_eq!(result_key(s, 1, "trend", &q), result_key(s, 1, "trend", &q));
        assert!(result_key(s, 1, "trend", &q).starts_with("tributary:query:v1:result:1:trend:"));
    }

    #[test]
    fn running_jobs_past_their_deadline_read_as_lost() {
        let job = json!({"status": "running", "deadline_ms": 1000, "project_id": 3});
        assert_eq!(job_view(job.clone(), 999)["status"], "running");
        let lost = job_view(job, 1001);
        assert_eq!(lost["status"], "failed");
        assert_eq!(lost["error"]["error"], "job_lost");
        assert!(lost.get("project_id").is_none());
    }
}

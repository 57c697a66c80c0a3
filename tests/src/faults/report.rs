//! What a scenario proves, in figures: sent, acknowledged, refused,
//! stored, shown by the query API, duplicates shown, lost, dead-lettered,
//! and how long recovery took.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::load::{EVENT, Tally};
use super::rig::Rig;

#[derive(Debug, Clone)]
pub struct Figures {
    pub scenario: &'static str,
    pub sent: u64,
    pub acked: u64,
    pub refused: BTreeMap<u16, u64>,
    /// Distinct events stored (acknowledged or not: a refused request's
    /// events may have been written before its acknowledgement was lost).
    pub stored: u64,
    /// The query API's total over the run.
    pub visible: u64,
    /// Acknowledged and not stored: must be 0.
    pub lost: u64,
    /// Shown more than once (`visible - stored`): must be 0.
    pub duplicates_visible: i64,
    pub dead_lettered: usize,
    /// From the fault's end to capture's first acknowledgement.
    pub capture_recovered: Option<Duration>,
    /// From the fault's end until every acknowledged event was stored.
    pub stored_after: Option<Duration>,
}

impl Figures {
    /// Measures the run: waits (up to `limit`) for every acknowledged
    /// event to be stored, then asks ClickHouse and the query API.
    pub async fn measure(
        scenario: &'static str,
        rig: &Rig,
        tally: &Tally,
        fault_ended: Instant,
        limit: Duration,
    ) -> Self {
        let stored_after = rig
            .until_stored(&tally.acked, limit)
            .await
            .map(|_| fault_ended.elapsed());
        let stored = rig.stored().await;
        let lost = tally.acked.difference(&stored).count() as u64;
        let visible = visible(&rig.query, &rig.query_key).await;
        if visible != stored.len() as u64 {
            let rows: Vec<(String, u64, u64, String, String, String)> = crate::clickhouse::client(&rig.clickhouse.url())
                .query(&format!("SELECT event, count(), uniqExact(uuid), toString(min(timestamp)), toString(max(timestamp)), toString(now()) FROM {}.events GROUP BY event", rig.database))
                .fetch_all()
                .await
                .unwrap_or_default();
            eprintln!(
                "the query API shows {visible} of {} stored; the table by event (event, rows, uuids, first, last, now): {rows:?}",
                stored.len()
            );
        }
        Self {
            scenario,
            sent: tally.sent,
            acked: tally.acked.len() as u64,
            refused: tally.refused.clone(),
            stored: stored.len() as u64,
            visible,
            lost,
            duplicates_visible: visible as i64 - stored.len() as i64,
            dead_lettered: rig.dead_lettered().await,
            capture_recovered: tally
                .ok_at
                .iter()
                .find(|t| **t >= fault_ended)
                .map(|t| t.duration_since(fault_ended)),
            stored_after,
        }
    }

    /// The guarantees: nothing acknowledged lost, nothing shown twice,
    /// nothing dead-lettered by an outage.
    pub fn holds(&self) -> Result<(), String> {
        if self.lost > 0 {
            return Err(format!(
                "{}: {} acknowledged events lost",
                self.scenario, self.lost
            ));
        }
        if self.duplicates_visible != 0 {
            return Err(format!(
                "{}: the query API showed {} events for {} stored",
                self.scenario, self.visible, self.stored
            ));
        }
        if self.dead_lettered > 0 {
            return Err(format!(
                "{}: {} messages dead-lettered",
                self.scenario, self.dead_lettered
            ));
        }
        if self.capture_recovered.is_none() {
            return Err(format!(
                "{}: capture acknowledged nothing after the fault",
                self.scenario
            ));
        }
        if self.stored_after.is_none() {
            return Err(format!(
                "{}: acknowledged events were not all stored in time",
                self.scenario
            ));
        }
        Ok(())
    }

    pub const HEADER: &'static str = "| scenario | sent | acked | refused (status: events) | stored | visible | duplicates visible | lost | DLQ | capture back after | all stored after |\n|---|---|---|---|---|---|---|---|---|---|---|";

    pub fn row(&self) -> String {
        let refused = if self.refused.is_empty() {
            "none".to_owned()
        } else {
            self.refused
                .iter()
                .map(|(s, n)| {
                    format!(
                        "{}: {n}",
                        if *s == 0 {
                            "no answer".to_owned()
                        } else {
                            s.to_string()
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let secs = |d: Option<Duration>| {
            d.map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
        };
        format!(
            "| {} | {} | {} | {refused} | {} | {} | {} | {} | {} | {} | {} |",
            self.scenario,
            self.sent,
            self.acked,
            self.stored,
            self.visible,
            self.duplicates_visible,
            self.lost,
            self.dead_lettered,
            secs(self.capture_recovered),
            secs(self.stored_after),
        )
    }
}

/// The load's events over the last day, as the query API counts them.
async fn visible(query: &str, key: &str) -> u64 {
    let http = reqwest::Client::new();
    let body = json!({"series": [{"event": EVENT, "math": "total"}], "date_from": "-1d", "interval": "day"});
    let answer: Value = match http
        .post(format!("{query}/api/query/trend?refresh=true"))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    answer["results"][0]["data"]
        .as_array()
        .map(|d| d.iter().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

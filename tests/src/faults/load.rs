//! A steady load through capture: several clients, single events on
//! `/capture` and batches on `/batch`, every event with its own uuid; what
//! was acknowledged and refused is kept by uuid and status.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The event name of the load (the query API counts it).
pub const EVENT: &str = "fault_load";

/// What the load saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Events sent.
    pub sent: u64,
    /// uuids of events in requests answered 2xx.
    pub acked: HashSet<String>,
    /// Events refused, by status (0: no answer at all).
    pub refused: BTreeMap<u16, u64>,
    /// When requests were answered 2xx.
    pub ok_at: Vec<Instant>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `clients` clients sending with `key`, each a request every `pause`.
    pub fn start(capture: &str, key: &str, clients: usize, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let clients = (0..clients)
            .map(|c| {
                let (stop, tally, http) = (Arc::clone(&stop), Arc::clone(&tally), http.clone());
                let (capture, key) = (capture.to_owned(), key.to_owned());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        send(&http, &capture, &key, c, n, &tally).await;
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            tally,
            clients,
        }
    }

    /// Waits (up to `limit`) until a request is acknowledged after `since`.
    pub async fn acknowledged_after(&self, since: Instant, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            let seen = self
                .tally
                .lock()
                .map(|t| t.ok_at.iter().any(|at| *at >= since))
                .unwrap_or(false);
            if seen {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Stops the clients (requests in flight finish) and returns the tally.
    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            let _ = c.await;
        }
        self.tally.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

fn event(client: usize, n: u64, i: usize) -> (String, Value) {
    let uuid = uuid::Uuid::now_v7().to_string();
    let body = json!({
        "event": EVENT,
        "distinct_id": format!("user-{}", (n as usize + client * 7 + i) % 50),
        "uuid": uuid,
        "properties": {"client": client, "n": n},
    });
    (uuid, body)
}

async fn send(
    http: &reqwest::Client,
    capture: &str,
    key: &str,
    client: usize,
    n: u64,
    tally: &Mutex<Tally>,
) {
    // Odd requests: one event on /capture; even: a batch of five on /batch.
    let (uuids, request) = if n % 2 == 1 {
        let (uuid, body) = event(client, n, 0);
        (
            vec![uuid],
            http.post(format!("{capture}/capture"))
                .header("x-api-key", key)
                .json(&body),
        )
    } else {
        let (uuids, batch): (Vec<String>, Vec<Value>) = (0..5).map(|i| event(client, n, i)).unzip();
        (
            uuids,
            http.post(format!("{capture}/batch"))
                .json(&json!({"api_key": key, "batch": batch})),
        )
    };
    let status = request
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    let Ok(mut t) = tally.lock() else { return };
    t.sent += uuids.len() as u64;
    if (200..300).contains(&status) {
        t.acked.extend(uuids);
        t.ok_at.push(Instant::now());
    } else {
        *t.refused.entry(status).or_default() += uuids.len() as u64;
    }
}

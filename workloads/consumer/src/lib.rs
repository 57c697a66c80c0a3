//! Tributary consumer: Kafka `events` → ClickHouse `events`, at least once.
//!
//! Messages are batched ([`batch`]) until `CONSUMER_BATCH_SIZE` messages or
//! `CONSUMER_FLUSH_INTERVAL_MS` after the first; one batch is written while
//! the next is read (batches are written and committed strictly in order;
//! a rebalance during a write at worst makes its new owner write the same
//! rows again, which collapse by uuid). A flush inserts the rows
//! ([`insert`]), sends poison messages and rejected rows to the DLQ ([`dlq`]),
//! and only then stores and commits the offsets. An unreachable ClickHouse
//! or DLQ is an outage: the flush is retried with exponential backoff, the
//! offsets stay uncommitted, nothing is dead-lettered. Offsets are committed
//! synchronously after each flush, and the rebalance callback commits any
//! stored offsets before partitions are revoked; rows of revoked partitions
//! still in the batch are dropped (their new owner reads them again). On
//! SIGTERM the batch is flushed and committed and the consumer leaves the
//! group.
//!
//! Replays (a crash between insert and commit, capture retrying a uuid) write
//! the same row twice: the table is a ReplacingMergeTree whose key ends in the
//! uuid, so duplicates collapse on merge, and readers deduplicate by uuid
//! until then. ClickHouse's insert deduplication was not chosen: it works on
//! whole identical blocks of Replicated tables, and a replayed batch is rarely
//! the same block.

pub mod batch;
pub mod config;
pub mod detailed;
pub mod dlq;
pub mod insert;
pub mod metrics;
pub mod row;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, join_all};
use prometheus_client::registry::Registry;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

pub use config::ConsumerConfig;

use crate::batch::{Batch, Incoming, Poison};
use crate::metrics::{ConsumerMetrics, KindLabels, PartitionLabels};

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("cannot create the Kafka {what} for {servers}: {source}")]
    Kafka {
        what: &'static str,
        servers: String,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    Serve(#[from] tributary_core::http::ServeError),
}

/// Rebalance and statistics callbacks.
struct Context {
    topic: String,
    revoked: Mutex<Vec<i32>>,
    /// Set while fetching is paused (see [`EventConsumer::hold`]):
    /// partitions assigned meanwhile are paused as they arrive.
    holding: AtomicBool,
    metrics: ConsumerMetrics,
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        if let Some(topic) = stats.topics.get(&self.topic) {
            for (partition, p) in &topic.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .lag
                        .get_or_create(&PartitionLabels {
                            partition: *partition,
                        })
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Offsets of written batches are stored; commit them while the
            // partitions are still ours.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
                && !matches!(
                    e,
                    KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)
                )
            {
                tracing::warn!(error = %e, "commit before revocation failed");
            }
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "partitions revoked");
            for p in &partitions {
                self.metrics.lag.remove(&PartitionLabels { partition: *p });
            }
            if let Ok(mut revoked) = self.revoked.lock() {
                revoked.extend(partitions);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Ok(assignment) = consumer.assignment() {
            self.metrics
                .assigned_partitions
                .set(assignment.count() as i64);
        }
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "partitions assigned");
            if self.holding.load(Ordering::SeqCst)
                && let Err(e) = consumer.pause(tpl)
            {
                tracing::warn!(error = %e, "cannot pause partitions assigned while holding");
            }
        }
    }
}

/// How long the consumer may go without polling Kafka before it leaves the
/// group: four inserts' limit and half a minute more.
fn max_poll_interval(insert_timeout: Duration) -> Duration {
    insert_timeout * 4 + Duration::from_secs(30)
}

/// librdkafka's prefetch limit (`queued.max.messages.kbytes`): one batch.
fn prefetch_kbytes(batch_max_bytes: usize) -> usize {
    batch_max_bytes.div_ceil(1024)
}

/// Exponential backoff from 200 ms to `max`.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_millis(200),
            max,
        }
    }

    fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }
}

/// The running consumer.
pub struct EventConsumer {
    config: ConsumerConfig,
    consumer: StreamConsumer<Context>,
    dlq: FutureProducer,
    clickhouse: clickhouse::Client,
    metrics: ConsumerMetrics,
    /// True while a write is being retried through an outage (ClickHouse
    /// or the DLQ unreachable).
    outage: tokio::sync::watch::Sender<bool>,
}

/// Why a flush did not complete.
enum FlushOutcome {
    Done,
    /// Shutdown arrived during an outage: offsets stay uncommitted.
    Abandoned,
}

impl EventConsumer {
    pub fn new(config: ConsumerConfig, metrics: ConsumerMetrics) -> Result<Self, ConsumerError> {
        let context = Context {
            topic: config.topic.clone(),
            revoked: Mutex::new(Vec::new()),
            holding: AtomicBool::new(false),
            metrics: metrics.clone(),
        };
        let consumer: StreamConsumer<Context> = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("group.id", &config.group_id)
            .set("client.id", "tributary-consumer")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            // The consumer polls all along, pausing its partitions through
            // an outage; it stops only to wait for one write (an insert of
            // at most CONSUMER_INSERT_TIMEOUT_MS, its bisection and DLQ
            // writes). This is also how long a rebalance waits for a member
            // that does not rejoin: an hour (as before the pausing) stalled
            // a whole group behind one lost join.
            .set(
                "max.poll.interval.ms",
                max_poll_interval(config.insert_timeout)
                    .as_millis()
                    .to_string(),
            )
            .set("statistics.interval.ms", "5000")
            // librdkafka prefetches up to 64 MiB by default, four batches
            // of the default size, whatever the batch size: one batch of
            // prefetch keeps the next batch ready while one is inserted,
            // and bounds memory by CONSUMER_BATCH_MAX_BYTES. Fetches shrink
            // to fit (fetch.max.bytes follows it unless set).
            .set(
                "queued.max.messages.kbytes",
                prefetch_kbytes(config.batch_max_bytes).to_string(),
            )
            // A full queue makes the fetcher wait this long (1 s by
            // default) before fetching again: with one batch of prefetch
            // that wait, not the insert, would set the pace.
            .set("fetch.queue.backoff.ms", "20")
            .create_with_context(context)
            .map_err(|source| ConsumerError::Kafka {
                what: "consumer",
                servers: config.bootstrap_servers.clone(),
                source,
            })?;
        let dlq: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("client.id", "tributary-consumer-dlq")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            // Room for the largest event capture accepts, escaped; a broker
            // that still refuses gets a truncated record (see dead_letter).
            .set("message.max.bytes", "10000000")
            .create()
            .map_err(|source| ConsumerError::Kafka {
                what: "DLQ producer",
                servers: config.bootstrap_servers.clone(),
                source,
            })?;
        let clickhouse = config.clickhouse.client();
        Ok(Self {
            config,
            consumer,
            dlq,
            clickhouse,
            metrics,
            outage: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Consumes until `shutdown`, then flushes, commits and leaves the
    /// group (or, with `CONSUMER_LEAVE_GROUP_ON_STOP=false`, stops without
    /// leaving: the process is expected to exit).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let result = self.consume(shutdown).await;
        if !self.config.leave_group_on_stop {
            // Dropping the Kafka client closes it, and closing sends the
            // LeaveGroup this setting holds back. The offsets are committed
            // (synchronously) by now; the process exits next and takes the
            // client's threads and sockets with it.
            std::mem::forget(self.consumer);
        }
        result
    }

    async fn consume(&self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        self.consumer
            .subscribe(&[&self.config.topic])
            .map_err(|source| ConsumerError::Kafka {
                what: "subscription",
                servers: self.config.bootstrap_servers.clone(),
                source,
            })?;
        tracing::info!(topic = %self.config.topic, group = %self.config.group_id, "consuming");
        let mut batch = Batch::default();
        // One timer for the flush deadline, re-armed only when a batch starts
        // (creating a timer per message costs more than decoding it).
        let flush_timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(flush_timer);
        let mut armed_for: Option<Instant> = None;
        // One batch is written while the next is read and decoded. Batches
        // are written (and their offsets committed) strictly in order.
        let mut in_flight: BoxFuture<'_, FlushOutcome> = Box::pin(std::future::pending());
        let mut flushing = false;
        let mut in_outage = self.outage.subscribe();
        loop {
            let deadline = batch.deadline(self.config.flush_interval);
            if deadline != armed_for {
                if let Some(d) = deadline {
                    flush_timer
                        .as_mut()
                        .reset(tokio::time::Instant::from_std(d));
                }
                armed_for = deadline;
            }
            // While a batch is being written, a full next batch waits for
            // it: at most two batches are held, each bounded by messages and
            // by bytes. A write takes milliseconds, and the consumer simply
            // stops reading meanwhile (what librdkafka fetched stays
            // queued). A write retried through an outage may take hours:
            // then the consumer pauses its partitions and goes on polling,
            // so it keeps its place in the group (rebalances, a consumer
            // added or restarted during a ClickHouse outage, complete
            // instead of waiting for this member).
            let waiting =
                flushing && batch.is_full(self.config.batch_size, self.config.batch_max_bytes);
            let outage = *in_outage.borrow_and_update();
            self.hold(waiting && outage);
            let may_read = !waiting || outage;
            let mut finished = None;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                outcome = &mut in_flight, if flushing => finished = Some(outcome),
                _ = in_outage.changed(), if waiting => {}
                _ = &mut flush_timer, if deadline.is_some() && !flushing => {}
                msg = self.consumer.recv(), if may_read => {
                    // Rebalance callbacks run inside recv(): forget what was
                    // revoked *before* adding the message it returned, which
                    // may come from a partition assigned back to us.
                    self.forget_revoked(&mut batch);
                    match msg {
                        Ok(m) => {
                            self.metrics.consumed.inc();
                            batch.push(
                                Incoming {
                                    partition: m.partition(),
                                    offset: m.offset(),
                                    key: m.key().map(<[u8]>::to_vec),
                                    payload: m.payload().map(<[u8]>::to_vec),
                                },
                                Instant::now(),
                            );
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Kafka consume error");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
            if let Some(outcome) = finished {
                flushing = false;
                in_flight = Box::pin(std::future::pending());
                if let FlushOutcome::Abandoned = outcome {
                    return self.leave();
                }
            }
            if !flushing
                && batch.is_due(
                    Instant::now(),
                    self.config.batch_size,
                    self.config.batch_max_bytes,
                    self.config.flush_interval,
                )
            {
                // A rebalance may have revoked partitions since the last
                // message (the callback runs while recv() waits): their
                // rows are their new owner's to write and commit.
                self.forget_revoked(&mut batch);
                if !batch.is_empty() {
                    let full = std::mem::take(&mut batch);
                    in_flight = Box::pin(self.flush(full, &shutdown));
                    flushing = true;
                }
            }
        }
        if flushing {
            // Shutdown: the batch being written finishes (an outage abandons it
            // without committing).
            if let FlushOutcome::Abandoned = in_flight.await {
                return self.leave();
            }
        } else {
            drop(in_flight);
        }
        self.forget_revoked(&mut batch);
        if !batch.is_empty() {
            tracing::info!(
                messages = batch.len(),
                "flushing the last batch before exit"
            );
            // A fresh token: the final flush must not be abandoned at once.
            let grace = CancellationToken::new();
            let timer = grace.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(25)).await;
                timer.cancel();
            });
            let _ = self.flush(batch, &grace).await;
        }
        self.leave()
    }

    /// Pauses fetching from every assigned partition (`true`) or resumes
    /// it. Pausing drops what librdkafka had fetched and not yet handed
    /// over; fetching resumes after the last message this consumer got.
    /// (A message may still arrive just after the pause: it joins the
    /// waiting batch, a few messages over its bound at most.)
    fn hold(&self, hold: bool) {
        let context = self.consumer.context();
        if context.holding.swap(hold, Ordering::SeqCst) == hold {
            return;
        }
        let result = self.consumer.assignment().and_then(|assigned| {
            if hold {
                self.consumer.pause(&assigned)
            } else {
                self.consumer.resume(&assigned)
            }
        });
        match result {
            Ok(()) => tracing::debug!(hold, "fetching paused while a batch waits, or resumed"),
            Err(e) => tracing::warn!(error = %e, hold, "cannot pause or resume fetching"),
        }
        self.metrics.fetch_paused.set(i64::from(hold));
    }

    /// Notes whether writes are failing (wakes the loop, which pauses or
    /// resumes fetching accordingly).
    fn set_outage(&self, outage: bool) {
        self.outage
            .send_if_modified(|now| std::mem::replace(now, outage) != outage);
        self.metrics.outage.set(i64::from(outage));
    }

    fn leave(&self) -> Result<(), ConsumerError> {
        if self.config.leave_group_on_stop {
            self.consumer.unsubscribe();
            tracing::info!("left the consumer group");
        } else {
            tracing::info!(
                session_timeout_ms = self.config.session_timeout.as_millis() as u64,
                "stopping without leaving the consumer group (CONSUMER_LEAVE_GROUP_ON_STOP=false): it moves this consumer's partitions after the session timeout"
            );
        }
        Ok(())
    }

    fn forget_revoked(&self, batch: &mut Batch) {
        let revoked: Vec<i32> = match self.consumer.context().revoked.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(_) => return,
        };
        if !revoked.is_empty() {
            let dropped = batch.drop_partitions(&revoked);
            self.metrics.revoked_messages.inc_by(dropped as u64);
            if dropped > 0 {
                tracing::info!(
                    dropped,
                    ?revoked,
                    "messages of revoked partitions left for their new owner"
                );
            }
        }
    }

    /// Writes a batch: insert (isolating rejected rows), dead-letter, commit.
    async fn flush(&self, batch: Batch, shutdown: &CancellationToken) -> FlushOutcome {
        let started = Instant::now();
        let table = "events";
        let entries = &batch.entries;
        let mut backoff = Backoff::new(self.config.backoff_max);

        // 1. Insert, retrying outages.
        let rejected = loop {
            let attempt = insert::insert_isolating(entries.len(), |range| {
                let rows = entries[range].iter().map(entry_row);
                insert::insert_rows(&self.clickhouse, table, rows, self.config.insert_timeout)
            })
            .await;
            match attempt {
                Ok(rejected) => break rejected,
                Err(reason) => {
                    self.set_outage(true);
                    self.metrics
                        .insert_errors
                        .get_or_create(&KindLabels {
                            kind: "outage".into(),
                        })
                        .inc();
                    let wait = backoff.step();
                    tracing::warn!(error = %reason, retry_in_ms = wait.as_millis() as u64, rows = entries.len(), "ClickHouse unavailable; batch kept, offsets not committed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return FlushOutcome::Abandoned,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        };

        // 2. Dead-letter poison messages and rejected rows.
        let mut dead: Vec<Poison> = batch.poison.clone();
        for p in &batch.poison {
            self.metrics
                .parse_errors
                .get_or_create(&KindLabels {
                    kind: p.kind.into(),
                })
                .inc();
        }
        for (index, reason) in &rejected {
            self.metrics
                .insert_errors
                .get_or_create(&KindLabels {
                    kind: "rejected".into(),
                })
                .inc();
            if let Some(e) = batch.entries.get(*index) {
                dead.push(Poison {
                    partition: e.partition,
                    offset: e.offset,
                    key: e.key.clone(),
                    raw: e.raw.clone(),
                    kind: "clickhouse_rejected",
                    message: reason.clone(),
                });
            }
        }
        let mut backoff = Backoff::new(self.config.backoff_max);
        while let Err(reason) = self.dead_letter(&dead).await {
            self.set_outage(true);
            let wait = backoff.step();
            tracing::warn!(error = %reason, retry_in_ms = wait.as_millis() as u64, "DLQ produce failed; offsets not committed");
            tokio::select! {
                _ = shutdown.cancelled() => return FlushOutcome::Abandoned,
                _ = tokio::time::sleep(wait) => {}
            }
        }

        self.set_outage(false);

        // 3. Store and commit the offsets.
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in batch.offsets() {
            if let Err(e) =
                tpl.add_partition_offset(&self.config.topic, partition, Offset::Offset(next))
            {
                tracing::error!(error = %e, partition, "bad offset in batch");
            }
        }
        if tpl.count() > 0 {
            let committed = self
                .consumer
                .store_offsets(&tpl)
                .and_then(|()| self.consumer.commit_consumer_state(CommitMode::Sync));
            if let Err(e) = committed {
                // Stored offsets are committed by the next flush or before a
                // revocation; at worst the batch is read again (and collapses).
                self.metrics.commit_errors.inc();
                tracing::warn!(error = %e, "offset commit failed");
            }
        }

        let written = entries.len() - rejected.len();
        let now_ms = chrono::Utc::now().timestamp_millis();
        for (i, e) in batch.entries.iter().enumerate() {
            if !rejected.iter().any(|(r, _)| *r == i) {
                self.metrics
                    .visibility
                    .observe(((now_ms - e.received_at_ms).max(0) as f64) / 1000.0);
            }
        }
        self.metrics.rows_written.inc_by(written as u64);
        self.metrics.batches_written.inc();
        self.metrics.batch_size.observe(batch.len() as f64);
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(rows = written, dead = dead.len(), "batch written");
        FlushOutcome::Done
    }

    /// Produces DLQ records and waits for every acknowledgement.
    async fn dead_letter(&self, dead: &[Poison]) -> Result<(), String> {
        if dead.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now();
        let topic = &self.config.topic;
        let values: Vec<String> = dead
            .iter()
            .map(|p| dlq::record(p, topic, now).to_string())
            .collect();
        let sends = dead
            .iter()
            .zip(&values)
            .map(|(p, value)| self.send_dead(p, value.as_bytes()));
        let results = join_all(sends).await;
        for (p, result) in dead.iter().zip(results) {
            let result = match result {
                // The broker will not take the whole message: keep what fits
                // (a prefix, the size and a digest) rather than block forever.
                Err(KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge,
                )) => {
                    let truncated = dlq::truncated_record(p, topic, now).to_string();
                    self.send_dead(p, truncated.as_bytes()).await
                }
                other => other,
            };
            if let Err(e) = result {
                return Err(e.to_string());
            }
            self.metrics
                .dlq_messages
                .get_or_create(&KindLabels {
                    kind: p.kind.into(),
                })
                .inc();
            tracing::warn!(kind = p.kind, partition = p.partition, offset = p.offset, error = %p.message, "message sent to the DLQ");
        }
        Ok(())
    }

    async fn send_dead(&self, p: &Poison, value: &[u8]) -> Result<(), KafkaError> {
        let mut record = FutureRecord::to(&self.config.dlq_topic).payload(value);
        if let Some(key) = &p.key {
            record = record.key(key.as_slice());
        }
        self.dlq
            .send(record, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

/// A named function, not a closure: the insert future stays `Send` for any
/// borrow of the batch.
fn entry_row(entry: &batch::Entry) -> &row::EventRow {
    &entry.row
}

/// Runs the consumer and its metrics server until `shutdown`.
pub async fn run(config: ConsumerConfig, shutdown: CancellationToken) -> Result<(), ConsumerError> {
    let mut registry = Registry::default();
    let metrics = ConsumerMetrics::register(&mut registry);
    let listen = std::net::SocketAddr::from(([0, 0, 0, 0], config.metrics_port));
    let listener = tributary_core::http::bind(listen).await?;
    let registry = Arc::new(registry);
    let router = tributary_core::http::health_router("consumer")
        .merge(detailed::router(
            config.clickhouse.client(),
            metrics.clone(),
            Arc::clone(&registry),
        ))
        .merge(tributary_core::metrics::router(registry));
    let server_shutdown = CancellationToken::new();
    let server = tokio::spawn(tributary_core::http::serve(
        listener,
        router,
        server_shutdown.clone(),
    ));
    tracing::info!(metrics = %listen, brokers = %config.bootstrap_servers, clickhouse = %config.clickhouse.url(), "consumer starting");
    let consumer = EventConsumer::new(config, metrics)?;
    let result = consumer.run(shutdown).await;
    server_shutdown.cancel();
    let _ = server.await;
    result
}

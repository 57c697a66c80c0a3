//! `tributary dlq`: the dead-letter topic as an operator works with it
//! (seed 004's tool verbs): `list` and `inspect` what failed and why,
//! `replay` selected messages once the cause is fixed, `report` counts by
//! error kind.
//!
//! A replay produces the original bytes with the original key back to the
//! topic they were read from. Events keep their uuid, and storage and
//! queries count a uuid once, so replaying a message twice does not count
//! it twice.

pub mod kafka;
pub mod patch;
pub mod report;
pub mod select;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use tributary_consumer::dlq;
use tributary_core::config::{ConfigError, Env};

use kafka::KafkaError;
use report::Entry;
use select::{Age, Locator, OffsetRange, Selection};

/// Broker requests time out after this long.
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead letters: where, when, which error, which event.
    List {
        /// Only this error kind (repeatable).
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Only those dead-lettered within this age (30m, 24h, 7d).
        #[arg(long)]
        since: Option<Age>,
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead letter in full (`partition:offset` from `list`).
    Inspect { at: Locator },
    /// Produce selected dead letters back to the topic they came from.
    #[command(group = clap::ArgGroup::new("which").required(true).multiple(true))]
    Replay {
        /// Messages of this error kind (repeatable).
        #[arg(long = "kind", group = "which")]
        kinds: Vec<String>,
        /// DLQ offsets `partition:from-to` or `partition:offset` (repeatable).
        #[arg(long = "offsets", group = "which")]
        ranges: Vec<OffsetRange>,
        /// Every dead letter (with --since: every recent one).
        #[arg(long, group = "which")]
        all: bool,
        /// Only those dead-lettered within this age.
        #[arg(long)]
        since: Option<Age>,
        /// Fix each event on the way: a JSON merge patch (RFC 7386), e.g.
        /// '{"v":1}' or '{"properties":{"bad":null}}'.
        #[arg(long, value_parser = patch::parse)]
        patch: Option<serde_json::Value>,
        /// Produce to this topic instead of each message's source topic.
        #[arg(long)]
        to_topic: Option<String>,
        /// Say what would be replayed, and replay nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Counts by error kind over a window.
    Report {
        /// The window, back from now (30m, 24h, 7d).
        #[arg(long, default_value = "24h")]
        since: Age,
    },
}

/// Where the dead letters are: the consumer's settings.
#[derive(Debug, Clone)]
pub struct DlqSettings {
    /// `CONSUMER_KAFKA_BOOTSTRAP_SERVERS`, else `KAFKA_BOOTSTRAP_SERVERS`
    /// (`localhost:9092`).
    pub bootstrap: String,
    /// `CONSUMER_DLQ_TOPIC` (`events-dlq`).
    pub topic: String,
}

impl DlqSettings {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let fallback = env.string("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")?;
        Ok(Self {
            bootstrap: env.string("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", &fallback)?,
            topic: env.string("CONSUMER_DLQ_TOPIC", "events-dlq")?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("no message {at} in {topic}")]
    NotFound { at: Locator, topic: String },
    #[error("nothing in {topic} matches the selection; `tributary dlq list` shows what is there")]
    NothingSelected { topic: String },
    #[error("all {kept} selected message(s) were kept back (see above); nothing was replayed")]
    NothingReplayable { kept: usize },
    #[error("interrupted")]
    Interrupted,
}

/// Every message of the DLQ, read back.
async fn entries(settings: &DlqSettings) -> Result<Vec<Entry>, DlqError> {
    let messages = kafka::read_all(&settings.bootstrap, &settings.topic, TIMEOUT).await?;
    Ok(messages.into_iter().map(entry).collect())
}

fn entry(m: kafka::Message) -> Entry {
    Entry {
        at: Locator {
            partition: m.partition,
            offset: m.offset,
        },
        letter: dlq::parse(&m.value),
        key: m.key,
    }
}

/// Runs `command`, printing its answer.
pub async fn run(command: DlqCommand, settings: &DlqSettings) -> Result<(), DlqError> {
    let now = Utc::now();
    let since = |age: Option<Age>| age.map(|a| now - a.0);
    match command {
        DlqCommand::List {
            kinds,
            since: age,
            limit,
        } => {
            let selection = Selection {
                kinds,
                ranges: Vec::new(),
                since: since(age),
            };
            let entries = entries(settings).await?;
            let chosen = select(&entries, &selection, true);
            let shown = &chosen[..chosen.len().min(limit)];
            print!("{}", report::list(shown));
            if chosen.len() > shown.len() {
                println!(
                    "({} more; narrow with --kind or --since, or raise --limit)",
                    chosen.len() - shown.len()
                );
            }
        }
        DlqCommand::Inspect { at } => inspect(at, settings).await?,
        DlqCommand::Report { since: age } => {
            let entries = entries(settings).await?;
            print!("{}", report::report(&entries, now - age.0, now));
        }
        DlqCommand::Replay {
            kinds,
            ranges,
            all: _,
            since: age,
            patch,
            to_topic,
            dry_run,
        } => {
            let selection = Selection {
                kinds,
                ranges,
                since: since(age),
            };
            let entries = entries(settings).await?;
            let chosen = select(&entries, &selection, false);
            if chosen.is_empty() {
                return Err(DlqError::NothingSelected {
                    topic: settings.topic.clone(),
                });
            }
            let how = How {
                patch,
                to_topic,
                dry_run,
            };
            replay(&chosen, settings, &how).await?;
        }
    }
    Ok(())
}

/// One message, read where it is.
async fn inspect(at: Locator, settings: &DlqSettings) -> Result<(), DlqError> {
    let message = kafka::read_at(
        &settings.bootstrap,
        &settings.topic,
        at.partition,
        at.offset,
        TIMEOUT,
    )
    .await?
    .ok_or_else(|| DlqError::NotFound {
        at,
        topic: settings.topic.clone(),
    })?;
    print!("{}", report::inspect(&entry(message)));
    Ok(())
}

/// The entries `selection` picks; records that cannot be read back only
/// when `unreadable` (a list shows them, a replay cannot use them).
fn select<'a>(entries: &'a [Entry], selection: &Selection, unreadable: bool) -> Vec<&'a Entry> {
    entries
        .iter()
        .filter(|e| match &e.letter {
            Ok(letter) => selection.matches(e.at, letter),
            Err(_) => unreadable && selection.kinds.is_empty() && selection.since.is_none(),
        })
        .collect()
}

/// How a replay goes.
struct How {
    patch: Option<serde_json::Value>,
    to_topic: Option<String>,
    dry_run: bool,
}

async fn replay(chosen: &[&Entry], settings: &DlqSettings, how: &How) -> Result<(), DlqError> {
    let mut records = Vec::new();
    let mut by_target: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut kept_back = Vec::new();
    for entry in chosen {
        let letter = match &entry.letter {
            Ok(letter) => letter,
            Err(why) => {
                kept_back.push(format!("{}: {why}", entry.at));
                continue;
            }
        };
        if letter.truncated {
            kept_back.push(format!(
                "{}: truncated, the DLQ holds only its first bytes; replay the original ({} {}:{})",
                entry.at, letter.topic, letter.partition, letter.offset
            ));
            continue;
        }
        let value = match &how.patch {
            None => letter.raw.clone(),
            Some(p) => match patch::apply(&letter.raw, p) {
                Ok(value) => value,
                Err(why) => {
                    kept_back.push(format!("{}: {why}", entry.at));
                    continue;
                }
            },
        };
        let key = entry.key.clone();
        let topic = how.to_topic.clone().unwrap_or_else(|| letter.topic.clone());
        *by_target
            .entry((topic.clone(), letter.error_kind.clone()))
            .or_default() += 1;
        records.push(kafka::Outgoing { topic, key, value });
    }
    if !how.dry_run && !records.is_empty() {
        kafka::produce(&settings.bootstrap, &records, TIMEOUT).await?;
    }
    let verb = if how.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    println!(
        "{verb} {} message(s) from {}",
        records.len(),
        settings.topic
    );
    for ((topic, kind), n) in &by_target {
        println!("  {n:>6}  {kind:<22} -> {topic}");
    }
    if !kept_back.is_empty() {
        println!("kept back {} message(s):", kept_back.len());
        for why in &kept_back {
            println!("  {why}");
        }
    }
    if records.is_empty() {
        return Err(DlqError::NothingReplayable {
            kept: kept_back.len(),
        });
    }
    Ok(())
}

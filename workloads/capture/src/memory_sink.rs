//! A [`Sink`] that keeps what it is sent in memory, for tests of the HTTP
//! side (routes, encodings, refusals) that need no broker. It can be told
//! to be unready or to refuse sends, as a broker outage would.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tributary_core::Event;

use crate::sink::{ProduceError, Readiness, Record, SendFuture, Sink};

#[derive(Debug, Default)]
pub struct MemorySink {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<Record>,
    /// `Some(why)`: not ready, and sends fail as Kafka's would.
    down: Option<&'static str>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every record acknowledged so far, in order.
    pub fn records(&self) -> Vec<Record> {
        self.state().records.clone()
    }

    /// Every record acknowledged so far, as events.
    pub fn events(&self) -> Vec<Event> {
        self.state()
            .records
            .iter()
            .filter_map(|r| Event::from_kafka_payload(&r.payload).ok())
            .collect()
    }

    /// Takes the records acknowledged so far, leaving none.
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut self.state().records)
    }

    /// Makes the sink unready (`Some(why)`) or ready again (`None`).
    pub fn set_down(&self, why: Option<&'static str>) {
        self.state().down = why;
    }
}

impl Sink for MemorySink {
    fn send<'a>(&'a self, records: &'a [Record]) -> SendFuture<'a> {
        Box::pin(async move {
            let mut state = self.state();
            if let Some(why) = state.down {
                return Err(ProduceError::NotReady(why.to_owned()));
            }
            state.records.extend_from_slice(records);
            Ok(())
        })
    }

    fn readiness(&self) -> Readiness {
        match self.state().down {
            None => Readiness::Ready,
            Some(why) => Readiness::NotReady(why),
        }
    }
}

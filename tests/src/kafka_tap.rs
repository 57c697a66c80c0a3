//! A private broker whose every request is seen on the way in: tansu
//! advertises a proxy's address as its own, so clients reach it only
//! through [`crate::tcp_proxy`], which decodes each request's header (and a
//! Metadata request's topics) with `kafka-protocol`. Tests count what a
//! client asks, per API, instead of trusting what it says it asks.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestHeader};
use kafka_protocol::protocol::{Decodable, HeaderVersion};

use crate::kafka::free_port;
use crate::tcp_proxy::TcpProxy;

/// One request a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub api: Option<ApiKey>,
    pub version: i16,
    /// For Metadata: `None` asks for every topic, else the names asked.
    pub topics: Option<Vec<String>>,
    /// For Metadata: whether it lets the broker create the topics asked.
    pub auto_create: Option<bool>,
}

#[derive(Default)]
struct Frames {
    /// Bytes of an unfinished request, per connection.
    partial: HashMap<usize, Vec<u8>>,
    seen: Vec<Seen>,
}

impl Frames {
    fn take(&mut self, connection: usize, bytes: &[u8]) {
        let buffer = self.partial.entry(connection).or_default();
        buffer.extend_from_slice(bytes);
        let mut done = Vec::new();
        loop {
            if buffer.len() < 4 {
                break;
            }
            let size = i32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
            let Ok(size) = usize::try_from(size) else {
                buffer.clear();
                break;
            };
            if buffer.len() < 4 + size {
                break;
            }
            let frame: Vec<u8> = buffer.drain(..4 + size).skip(4).collect();
            done.push(decode(&frame));
        }
        self.seen.extend(done.into_iter().flatten());
    }
}

fn decode(frame: &[u8]) -> Option<Seen> {
    if frame.len() < 4 {
        return None;
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(key).ok();
    let metadata = (api == Some(ApiKey::Metadata))
        .then(|| {
            let mut buf = Bytes::copy_from_slice(frame);
            RequestHeader::decode(&mut buf, MetadataRequest::header_version(version))
                .and_then(|_| MetadataRequest::decode(&mut buf, version))
                .ok()
        })
        .flatten();
    Some(Seen {
        api,
        version,
        topics: metadata.as_ref().and_then(|m| {
            m.topics.as_ref().map(|ts| {
                ts.iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
                    .collect()
            })
        }),
        // Versions below 4 carry no flag: brokers may auto-create.
        auto_create: metadata
            .as_ref()
            .map(|m| version < 4 || m.allow_auto_topic_creation),
    })
}

/// A tansu broker of its own, reachable only through a counting proxy.
pub struct TappedBroker {
    child: Child,
    proxy: TcpProxy,
    frames: Arc<Mutex<Frames>>,
}

impl TappedBroker {
    pub fn start(tansu: &Path) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap_or_else(|e| panic!("{e}"));
        let advertised = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let child = Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://{advertised}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", tansu.display()));
        crate::wait_listening(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "the tapped broker",
            Duration::from_secs(30),
        );
        let frames = Arc::new(Mutex::new(Frames::default()));
        let sink = Arc::clone(&frames);
        let upstream = SocketAddr::from(([127, 0, 0, 1], port));
        let proxy = TcpProxy::on(
            listener,
            upstream,
            Some(Arc::new(move |connection, bytes: &[u8]| {
                if let Ok(mut f) = sink.lock() {
                    f.take(connection, bytes);
                }
            })),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Self {
            child,
            proxy,
            frames,
        }
    }

    /// The address clients use (the proxy's).
    pub fn bootstrap(&self) -> String {
        self.proxy.addr().to_string()
    }

    /// Holds the broker's answers (`true`): requests reach it, their
    /// acknowledgements do not come back until released.
    pub fn hold_replies(&self, hold: bool) {
        self.proxy.hold_replies(hold);
    }

    /// Holds clients' requests (`true`): a commit sent meanwhile does not
    /// reach the broker; [`cut`](Self::cut) while holding drops it.
    pub fn hold_requests(&self, hold: bool) {
        self.proxy.hold_requests(hold);
    }

    /// Drops every connection to the broker and refuses new ones (`true`),
    /// as a broker gone from the network; `false` takes them again.
    pub fn cut(&self, cut: bool) {
        if cut {
            self.proxy.cut();
        } else {
            self.proxy.restore();
        }
    }

    /// Every request seen since the last call.
    pub fn take(&self) -> Vec<Seen> {
        self.frames
            .lock()
            .map(|mut f| std::mem::take(&mut f.seen))
            .unwrap_or_default()
    }

    /// How many of `seen` were `api`.
    pub fn count(seen: &[Seen], api: ApiKey) -> usize {
        seen.iter().filter(|s| s.api == Some(api)).count()
    }
}

impl Drop for TappedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

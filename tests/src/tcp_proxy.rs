//! A TCP proxy on loopback between a client under test and a real server:
//! it can be cut (every connection dropped, new ones refused) to make the
//! server unreachable without stopping it, it can hold the server's replies
//! (requests arrive, answers do not: an acknowledgement that never comes),
//! and it can show a tap the bytes clients send (to count a protocol's
//! requests).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes clients send, per connection: `(connection number, bytes)`.
pub type Tap = Arc<dyn Fn(usize, &[u8]) + Send + Sync>;

pub struct TcpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    hold_requests: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr, tap: Option<Tap>) -> std::io::Result<Self> {
        Self::on(TcpListener::bind(("127.0.0.1", 0))?, upstream, tap)
    }

    /// Forwards what `listener` accepts to `upstream`.
    pub fn on(
        listener: TcpListener,
        upstream: SocketAddr,
        tap: Option<Tap>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(false));
        let replies_held = Arc::clone(&hold);
        let hold_requests = Arc::new(AtomicBool::new(false));
        let requests_held = Arc::clone(&hold_requests);
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (stop, streams) = (Arc::clone(&cut), Arc::clone(&open));
        std::thread::spawn(move || {
            for (n, client) in listener.incoming().enumerate() {
                let Ok(client) = client else { continue };
                if stop.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))
                else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                if let Ok(mut all) = streams.lock() {
                    all.extend(
                        [client.try_clone(), server.try_clone()]
                            .into_iter()
                            .flatten(),
                    );
                }
                let tap = tap.clone();
                let held = Arc::clone(&replies_held);
                let asked = Arc::clone(&requests_held);
                std::thread::spawn(move || pump(client, s2, tap.map(|t| (t, n)), Some(asked)));
                std::thread::spawn(move || pump(server, c2, None, Some(held)));
            }
        });
        Ok(Self {
            addr,
            cut,
            hold,
            hold_requests,
            open,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds what the server sends back (`true`) until released (`false`):
    /// requests still reach it, its answers wait in the proxy.
    pub fn hold_replies(&self, hold: bool) {
        self.hold.store(hold, Ordering::SeqCst);
    }

    /// Takes connections again after [`cut`](Self::cut).
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Holds what clients send (`true`): their requests wait in the proxy
    /// and never reach the server if the connection is [`cut`](Self::cut)
    /// meanwhile.
    pub fn hold_requests(&self, hold: bool) {
        self.hold_requests.store(hold, Ordering::SeqCst);
    }

    /// Drops every connection and refuses (closes at once) new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Ok(mut all) = self.open.lock() {
            for s in all.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    tap: Option<(Tap, usize)>,
    hold: Option<Arc<AtomicBool>>,
) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some((tap, connection)) = &tap {
                    tap(*connection, &buf[..n]);
                }
                while hold.as_ref().is_some_and(|h| h.load(Ordering::SeqCst)) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

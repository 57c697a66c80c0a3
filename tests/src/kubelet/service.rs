//! A Service's address as kube-proxy makes it: each new connection to
//! `address:port` goes to the next of the ready endpoints (round robin);
//! with none ready the connection is refused (closed at once), as a
//! Service without endpoints rejects it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Where a Service port's connections may go, shared with whoever decides
/// readiness.
#[derive(Debug, Clone, Default)]
pub struct Endpoints(Arc<Mutex<Vec<SocketAddr>>>);

impl Endpoints {
    pub fn set(&self, ready: Vec<SocketAddr>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = ready;
    }

    pub fn get(&self) -> Vec<SocketAddr> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One Service port, forwarding while it lives.
pub struct ServicePort {
    pub address: SocketAddr,
    pub endpoints: Endpoints,
    /// Connections forwarded, per endpoint.
    pub forwarded: Arc<Mutex<std::collections::BTreeMap<SocketAddr, u64>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl ServicePort {
    pub async fn start(address: SocketAddr, endpoints: Endpoints) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let forwarded: Arc<Mutex<std::collections::BTreeMap<SocketAddr, u64>>> = Arc::default();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (eps, counts, open) = (
            endpoints.clone(),
            Arc::clone(&forwarded),
            Arc::clone(&connections),
        );
        let next = AtomicUsize::new(0);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let ready = eps.get();
                if ready.is_empty() {
                    drop(client);
                    continue;
                }
                let target = ready[next.fetch_add(1, Ordering::Relaxed) % ready.len()];
                *counts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(target)
                    .or_default() += 1;
                let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
                open.retain(|t| !t.is_finished());
                open.push(tokio::spawn(forward(client, target)));
            }
        });
        Ok(Self {
            address,
            endpoints,
            forwarded,
            connections,
            task,
        })
    }

    /// Closes every connection it forwards now (the peer is gone).
    pub fn cut(&self) {
        for t in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr) {
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

impl Drop for ServicePort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

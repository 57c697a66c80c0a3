//! The node's network: a bridge in the test's own network namespace, one
//! network namespace per pod (its own address, as a pod has), Service
//! addresses on the bridge, and each pod's `/etc/hosts` (what the cluster's
//! DNS would answer it), bind-mounted by `ip netns exec` from
//! `/etc/netns/<pod>/hosts`.
//!
//! Addresses: `10.<n>.0.1` the node, `10.<n>.0.<k>` Services,
//! `10.<n>.1.<k>` pods, with `<n>` picked free on this machine.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Why the network cannot be set up (needs root and iproute2).
#[derive(Debug, thiserror::Error)]
#[error("ip {args}: {message}")]
pub struct NetError {
    args: String,
    message: String,
}

fn ip(args: &[&str]) -> Result<(), NetError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetError {
            args: args.join(" "),
            message: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetError {
        args: args.join(" "),
        message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// The node's bridge and what was made on it; all removed on drop.
pub struct Network {
    /// Short tag of this network, in interface and namespace names.
    tag: String,
    octet: u8,
    bridge: String,
    next: Mutex<(u8, u8)>,
    pods: Mutex<Vec<String>>,
}

impl Network {
    /// A bridge on a `10.<n>.0.0/16` that no interface of this machine uses.
    pub fn create() -> Result<Self, NetError> {
        let used = Command::new("ip")
            .args(["-o", "-4", "addr"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        // Start from the pid (and a count, for threads of one process) so
        // concurrent tests try apart; a bridge name taken means the octet
        // is, so the next is tried.
        static TRIES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let start =
            (std::process::id() + TRIES.fetch_add(7, std::sync::atomic::Ordering::Relaxed)) % 100;
        let mut chosen = None;
        for i in 0..100u32 {
            let octet = u8::try_from(120 + (start + i) % 100).unwrap_or(120);
            // Claimed across processes by making a directory (atomic);
            // released on drop.
            let claim = std::env::temp_dir()
                .join("tributary-kubelet-nets")
                .join(octet.to_string());
            let _ = std::fs::create_dir_all(claim.parent().unwrap_or(&claim));
            if used.contains(&format!(" 10.{octet}.")) || std::fs::create_dir(&claim).is_err() {
                continue;
            }
            let tag = format!("{:x}{octet:02x}", std::process::id() % 0xfff);
            let bridge = format!("kb{tag}");
            if ip(&["link", "add", &bridge, "type", "bridge"]).is_ok() {
                chosen = Some((octet, tag, bridge));
                break;
            }
            let _ = std::fs::remove_dir(&claim);
        }
        let (octet, tag, bridge) = chosen.ok_or_else(|| NetError {
            args: "link add".into(),
            message: "no free 10.x.0.0/16 and bridge name".into(),
        })?;
        let net = Self {
            tag,
            octet,
            bridge,
            next: Mutex::new((2, 2)),
            pods: Mutex::new(Vec::new()),
        };
        // A bridge without an address of its own takes the lowest MAC of
        // its ports, so it changed as pods came and went, and pods' ARP
        // entries for Service addresses pointed at a MAC nobody answered
        // (connections hung until the entries expired, 30-60 s). A fixed,
        // locally administered MAC keeps it.
        ip(&[
            "link",
            "set",
            &net.bridge,
            "address",
            &format!("02:54:52:42:00:{octet:02x}"),
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("10.{octet}.0.1/16"),
            "dev",
            &net.bridge,
        ])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        Ok(net)
    }

    /// A new Service address, on the node.
    pub fn service_address(&self) -> Result<Ipv4Addr, NetError> {
        let k = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            next.0 += 1;
            next.0 - 1
        };
        let addr = Ipv4Addr::new(10, self.octet, 0, k);
        ip(&["addr", "add", &format!("{addr}/32"), "dev", &self.bridge])?;
        Ok(addr)
    }

    /// A pod's network namespace with its own address, routed through the
    /// node, and its hosts file.
    pub fn pod(&self, hosts: &str) -> Result<PodNet, NetError> {
        let k = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            next.1 = next.1.checked_add(1).ok_or_else(|| NetError {
                args: "pod".into(),
                message: "more than 250 pods".into(),
            })?;
            next.1 - 1
        };
        let addr = Ipv4Addr::new(10, self.octet, 1, k);
        let ns = format!("kp{}-{k}", self.tag);
        let (host_end, pod_end) = (format!("kv{}{k}", self.tag), format!("kw{}{k}", self.tag));
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ns.clone());
        let dir = PathBuf::from("/etc/netns").join(&ns);
        std::fs::create_dir_all(&dir).map_err(|e| NetError {
            args: format!("hosts of {ns}"),
            message: e.to_string(),
        })?;
        std::fs::write(dir.join("hosts"), hosts).map_err(|e| NetError {
            args: format!("hosts of {ns}"),
            message: e.to_string(),
        })?;
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &pod_end,
        ])?;
        ip(&["link", "set", &pod_end, "netns", &ns])?;
        ip(&["link", "set", &host_end, "master", &self.bridge])?;
        ip(&["link", "set", &host_end, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/16"),
            "dev",
            &pod_end,
        ])?;
        ip(&["-n", &ns, "link", "set", &pod_end, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &format!("10.{}.0.1", self.octet),
        ])?;
        Ok(PodNet {
            namespace: ns,
            address: addr,
            host_end,
        })
    }

    /// Removes a pod's namespace (its processes must be gone).
    pub fn remove_pod(&self, pod: &PodNet) {
        remove_namespace(&pod.namespace);
        let _ = ip(&["link", "del", &pod.host_end]);
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n| *n != pod.namespace);
    }
}

fn remove_namespace(ns: &str) {
    let _ = ip(&["netns", "del", ns]);
    let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns));
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            remove_namespace(&ns);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        let _ = std::fs::remove_dir(
            std::env::temp_dir()
                .join("tributary-kubelet-nets")
                .join(self.octet.to_string()),
        );
    }
}

/// A pod's place on the network.
#[derive(Debug, Clone)]
pub struct PodNet {
    /// The network namespace its processes run in.
    pub namespace: String,
    pub address: Ipv4Addr,
    host_end: String,
}

//! This machine's own addresses, and the forwarder that lets the `sam local` suites'
//! containers reach DynamoDB Local from the Docker bridge only.
//!
//! DynamoDB Local listens on 127.0.0.1 alone (`local/src/dynamodb_local.rs`), which a
//! container cannot reach. `bridge-forward` (src/bin) listens on the bridge's gateway
//! address, bound to the bridge's interface (`SO_BINDTODEVICE`: a connection arriving on
//! any other interface is refused by the kernel), hands over only connections from the
//! bridge's subnet, and forwards each to DynamoDB Local on loopback.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::str::FromStr;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// This machine's addresses other than loopback (and IPv6 link-local, which needs a scope
/// to connect to), from `ip -o addr show` (iproute2), else `hostname -I`.
pub fn own_non_loopback_addresses() -> Vec<IpAddr> {
    // `ip -o addr show`: "2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0":
    // the word after `inet` or `inet6` (not the broadcast address, which is no host's).
    let words: Vec<String> = match Command::new("ip").args(["-o", "addr", "show"]).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            text.lines()
                .flat_map(|line| {
                    let w: Vec<&str> = line.split_whitespace().collect();
                    w.windows(2)
                        .filter(|p| p[0] == "inet" || p[0] == "inet6")
                        .map(|p| p[1].to_owned())
                        .collect::<Vec<_>>()
                })
                .collect()
        }
        _ => Command::new("hostname")
            .arg("-I")
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut addresses: Vec<IpAddr> = words
        .iter()
        .filter_map(|word| word.split('/').next()?.parse().ok())
        .filter(|ip: &IpAddr| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
            IpAddr::V6(v6) => {
                !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
            }
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// An IPv4 network, `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    network: u32,
    mask: u32,
}

impl Ipv4Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let v4 = match ip {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => return false,
            },
        };
        u32::from(v4) & self.mask == self.network
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a.b.c.d/len"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let len: u32 = len.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if len > 32 {
            return Err(format!("{s:?}: a prefix of at most 32 bits"));
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(Self {
            network: u32::from(ip) & mask,
            mask,
        })
    }
}

/// A listener on `listen`, bound to the interface `device` (`SO_BINDTODEVICE`, Linux) so
/// that only connections arriving on it reach it.
pub fn listen_on_device(listen: SocketAddr, device: &str) -> io::Result<TcpListener> {
    let socket = match listen {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    bind_device(&socket, device)?;
    socket.bind(listen)?;
    socket.listen(128)
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
fn bind_device(socket: &TcpSocket, device: &str) -> io::Result<()> {
    socket.bind_device(Some(device.as_bytes()))
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
fn bind_device(_: &TcpSocket, _: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "binding a socket to an interface needs Linux",
    ))
}

/// Accepts connections on `listener` for ever; each from a peer in `allow` is forwarded
/// to `to`, any other is closed at once (nothing read, nothing forwarded) and reported
/// on stderr.
pub async fn forward(listener: TcpListener, allow: Ipv4Net, to: SocketAddr) {
    loop {
        let (inbound, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("bridge-forward: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if !allow.contains(peer.ip()) {
            eprintln!(
                "bridge-forward: closed a connection from {peer}, which is not on the bridge"
            );
            drop(inbound);
            continue;
        }
        tokio::spawn(async move {
            let mut inbound = inbound;
            match TcpStream::connect(to).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => eprintln!("bridge-forward: connecting to {to} for {peer}: {e}"),
            }
        });
    }
}

//! The `sam local` suites' way to DynamoDB Local (scripts/sam-local.sh): listens on the
//! Docker bridge's gateway address, bound to the bridge's interface, and forwards each
//! connection from the bridge's subnet to DynamoDB Local on loopback (`im_e2e::net`).
//! Nothing on another interface reaches it, and DynamoDB Local itself stays on 127.0.0.1.
//!
//!   bridge-forward GATEWAY_IP INTERFACE SUBNET TARGET
//!   bridge-forward 172.17.0.1 docker0 172.17.0.0/16 127.0.0.1:8000
//!
//! Prints `listening on GATEWAY_IP:PORT` (a free port) once it accepts connections, then
//! runs until it is stopped.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use im_e2e::net::{forward, listen_on_device, Ipv4Net};

fn usage() -> ! {
    eprintln!("usage: bridge-forward GATEWAY_IP INTERFACE SUBNET TARGET_ADDR:PORT");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gateway, device, subnet, target] = args.as_slice() else {
        usage()
    };
    let gateway: IpAddr = gateway.parse().unwrap_or_else(|_| usage());
    let allow: Ipv4Net = subnet.parse().unwrap_or_else(|e| {
        eprintln!("bridge-forward: {e}");
        usage()
    });
    let target: SocketAddr = target.parse().unwrap_or_else(|_| usage());
    let listener = listen_on_device(SocketAddr::new(gateway, 0), device).unwrap_or_else(|e| {
        eprintln!("bridge-forward: cannot listen on {gateway} bound to {device}: {e}");
        std::process::exit(1)
    });
    let local = listener.local_addr().expect("the listener's address");
    println!("listening on {local}");
    std::io::stdout().flush().expect("stdout");
    forward(listener, allow, target).await;
}

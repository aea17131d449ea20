//! What TLS costs a call to the coordinator: one client calling a real `prlx-coordinator
//! serve` one call after another, four ways side by side in one run.
//!
//! ```sh
//! cargo build --release --bins && cargo bench -p prlx-tests --bench http_calls
//! ```
//!
//! - plain HTTP, a new connection per call: how `prlx-node` and `prlx-client` called before
//!   TLS (and how `prlx-client` still calls, over TLS);
//! - TLS, a new connection per call: a full handshake (ECDHE, the certificate's ECDSA P-256
//!   signature checked against the pin) each time;
//! - TLS on one kept connection: how `prlx-node` calls now (`prlx_node::client`);
//! - plain HTTP on one kept connection.
//!
//! Two coordinators on file logs, one with its development certificate and one with
//! `--plain-http`, both with `--rate-limit 0`; each call is `GET /healthz`, which does nothing
//! but answer, so the figures are the transport's. Rounds alternate the four ways; a round is
//! `PRLX_BENCH_CALLS` calls (default 1,000). The table gives, per way, the median over the
//! rounds of calls/s and of the coordinator's and the client's CPU per call (Linux
//! `schedstat`, all threads).

use std::time::{Duration, Instant};

use prlx_commands::testkit::intake::CATALOG;
use prlx_events::endpoint::Endpoint;
use prlx_node::client::CoordinatorClient;
use prlx_tests::harness::launch::{LaunchTls, ServeLaunch};
use prlx_tests::harness::process::{cpu_ms, cpu_ns};

#[path = "../../node/benches/common/median.rs"]
mod median;
use median::median;

const ROUNDS: usize = 5;

/// One way of calling: its name, and one call.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    PlainFresh,
    TlsFresh,
    TlsKept,
    PlainKept,
}

impl Way {
    const ALL: [Way; 4] = [Way::PlainFresh, Way::TlsFresh, Way::TlsKept, Way::PlainKept];

    fn name(self) -> &'static str {
        match self {
            Way::PlainFresh => "plain HTTP, new connection per call (before TLS)",
            Way::TlsFresh => "TLS, new connection per call",
            Way::TlsKept => "TLS, one kept connection (the node now)",
            Way::PlainKept => "plain HTTP, one kept connection",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Way::TlsFresh | Way::TlsKept)
    }
}

struct Target {
    endpoint: Endpoint,
    kept: CoordinatorClient,
    pid: u32,
}

async fn call(way: Way, target: &Target) {
    let status = match way {
        Way::PlainFresh | Way::TlsFresh => {
            prlx_commands::client::request(&target.endpoint, "GET", "/healthz", None, None)
                .await
                .unwrap()
                .0
        }
        Way::TlsKept | Way::PlainKept => target.kept.get("/healthz").await.unwrap().status,
    };
    assert_eq!(status, 200);
}

/// One way's rounds: calls/s, and the coordinator's and the client's CPU µs per call.
struct Row {
    way: Way,
    rate: Vec<f64>,
    server: Vec<f64>,
    client: Vec<f64>,
}

fn main() -> anyhow::Result<()> {
    let calls: usize = std::env::var("PRLX_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("catalog.json");
    std::fs::write(&catalog, CATALOG)?;
    let start = |sub: &str, tls: LaunchTls| {
        let sub = dir.path().join(sub);
        std::fs::create_dir_all(&sub).unwrap();
        let launch = ServeLaunch {
            tls,
            extra: vec!["--rate-limit".into(), "0".into()],
            ..ServeLaunch::in_dir(&sub, &catalog, "bench/1")
        };
        let (proc, addr) = launch.spawn(&format!("coordinator ({})", sub.display()));
        let (url, pin) = match launch.tls {
            LaunchTls::Plain => (format!("http://{addr}"), None),
            _ => (format!("https://{addr}"), Some(launch.cert())),
        };
        let target = Target {
            endpoint: Endpoint::new(&url, pin.as_deref()).unwrap(),
            kept: CoordinatorClient::new(&url, pin.as_deref()).unwrap(),
            pid: proc.pid(),
        };
        (proc, target)
    };
    let (_tls_proc, tls) = start("tls", LaunchTls::Development);
    let (_plain_proc, plain) = start("plain", LaunchTls::Plain);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let me = std::process::id();
    let mut results: Vec<Row> = Way::ALL
        .iter()
        .map(|&way| Row {
            way,
            rate: Vec::new(),
            server: Vec::new(),
            client: Vec::new(),
        })
        .collect();
    for round in 0..=ROUNDS {
        // Round 0 warms up both coordinators and is not counted; later rounds rotate the order.
        let mut order = Way::ALL.to_vec();
        order.rotate_left(round % Way::ALL.len());
        for way in order {
            let target = if way.tls() { &tls } else { &plain };
            let (server_before, client_before) = (cpu_ns(target.pid), cpu_ns(me));
            let started = Instant::now();
            rt.block_on(async {
                for _ in 0..calls {
                    call(way, target).await;
                }
            });
            let took = started.elapsed();
            let (server, client) = (
                cpu_ms(&server_before, &cpu_ns(target.pid)),
                cpu_ms(&client_before, &cpu_ns(me)),
            );
            if round == 0 {
                continue;
            }
            let row = results.iter_mut().find(|r| r.way == way).unwrap();
            row.rate.push(calls as f64 / took.as_secs_f64());
            row.server.push(server * 1000.0 / calls as f64);
            row.client.push(client * 1000.0 / calls as f64);
            eprintln!(
                "round {round}: {}: {:.0} calls/s, coordinator {:.0} µs/call, client {:.0} µs/call",
                way.name(),
                calls as f64 / took.as_secs_f64(),
                server * 1000.0 / calls as f64,
                client * 1000.0 / calls as f64
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    println!(
        "\n{calls} sequential GET /healthz per round, median of {ROUNDS} rounds\n\n\
         | way | calls/s | coordinator CPU per call (µs) | client CPU per call (µs) |\n\
         |---|---:|---:|---:|"
    );
    for row in results {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} |",
            row.way.name(),
            median(row.rate),
            median(row.server),
            median(row.client)
        );
    }
    Ok(())
}

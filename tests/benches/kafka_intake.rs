//! Submissions per second through the Kafka intake: records on the submissions topic in,
//! answers on the reply topic out. Three ways, alternating in each round:
//! - file log: the coordinator's log on a file; every answer released only once its request
//!   is durable and every offset committed after its answer (at least once, idempotent);
//! - Kafka log, at least once: the log on the broker, the intake as above;
//! - Kafka log, exactly once: answers and offsets in the log writer's transactions;
//! - file log with consents in batches: as the file log, each 64 submissions signed once
//!   (`consent_batch`), so the door recovers one signature per 64 instead of one each.
//!
//! `PRLX_BENCH_KAFKA=127.0.0.1:19092 cargo bench -p prlx-tests --bench kafka_intake`
//! (`PRLX_BENCH_QUICK=1` for a short run). Without `PRLX_BENCH_KAFKA` it says so and exits.
//!
//! The clock starts when the first of `SUBMISSIONS` records (all produced beforehand, so the
//! producer is not what is measured) can be consumed, that is when the intake starts, and
//! stops when the last answer has been read back from the reply topic.

use std::time::{Duration, Instant};

use prlx_commands::kafka_intake;
use prlx_events::crypto::public_key_pem;
use prlx_events::log::LogUrl;
use prlx_tests::intake::{
    chat_coordinator, chat_coordinator_on, fresh_intake_config, submission_body,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// How the intake commits (see the module docs).
#[derive(Debug, Clone, Copy)]
enum Way {
    FileLog,
    KafkaLogAtLeastOnce,
    KafkaLogExactlyOnce,
    FileLogConsentBatches,
}

/// Submissions signed at once in the batched way.
const CONSENT_BATCH: usize = 64;

/// The bodies of the batched way: each [`CONSENT_BATCH`] of them signed once.
fn batch_signed_bodies(submissions: usize, pem: &str) -> Vec<String> {
    let key = prlx_commands::testkit::accounts::key(prlx_tests::intake::ACCOUNT_NAME);
    let mut bodies: Vec<serde_json::Value> = (0..submissions)
        .map(|i| {
            let mut b: serde_json::Value =
                serde_json::from_str(&submission_body(&prompt(i), pem, &reference(i))).unwrap();
            b["idempotency_key"] = reference(i).into();
            b
        })
        .collect();
    for batch in bodies.chunks_mut(CONSENT_BATCH) {
        prlx_commands::testkit::accounts::sign_bodies_as_batch(
            batch,
            &key,
            &prlx_commands::consent::ConsentDomain::default(),
        );
    }
    bodies
        .into_iter()
        .map(|mut b| {
            // The record's key is the reference; the body need not repeat it.
            b.as_object_mut().unwrap().remove("idempotency_key");
            b.to_string()
        })
        .collect()
}

fn prompt(i: usize) -> String {
    format!("prompt number {i}: the capital of France?")
}

fn reference(i: usize) -> String {
    format!("order-{i}")
}

async fn run_once(bootstrap: &str, submissions: usize, pem: &str, way: Way) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fresh_intake_config(bootstrap);
    let handle = match way {
        Way::FileLog | Way::FileLogConsentBatches => chat_coordinator(dir.path()).await.0,
        Way::KafkaLogAtLeastOnce | Way::KafkaLogExactlyOnce => {
            config.transactional = matches!(way, Way::KafkaLogExactlyOnce);
            let topic = prlx_tests::kafka::fresh_topic("bench", "intake-log");
            let url = LogUrl::parse(&format!("kafka://{bootstrap}/{topic}")).unwrap();
            chat_coordinator_on(&url).await
        }
    };
    kafka_intake::ensure_topics(&config).await.unwrap();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    let bodies: Vec<String> = match way {
        Way::FileLogConsentBatches => batch_signed_bodies(submissions, pem),
        _ => (0..submissions)
            .map(|i| submission_body(&prompt(i), pem, &reference(i)))
            .collect(),
    };
    // Queued all at once (send_result does not wait), then every delivery awaited.
    let sends: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let key = reference(i);
            producer
                .send_result(
                    FutureRecord::to(&config.submissions_topic)
                        .key(&key)
                        .payload(b),
                )
                .map_err(|(e, _)| e)
                .unwrap()
        })
        .collect();
    for s in sends {
        s.await.unwrap().map_err(|(e, _)| e).unwrap();
    }

    let replies: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{}-replies", config.group_id))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    replies.subscribe(&[&config.replies_topic]).unwrap();

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    let intake = tokio::spawn(kafka_intake::run(handle.clone(), config.clone(), stopped));
    let mut answered = 0;
    while answered < submissions {
        let m = tokio::time::timeout(Duration::from_secs(60), replies.recv())
            .await
            .expect("answers keep coming")
            .unwrap();
        let reply: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(reply["status"], "accepted", "{reply}");
        answered += 1;
    }
    let elapsed = t.elapsed();
    stop.send(true).unwrap();
    intake.await.unwrap().unwrap();
    elapsed
}

fn main() {
    let Ok(bootstrap) = std::env::var("PRLX_BENCH_KAFKA") else {
        eprintln!("kafka_intake bench: set PRLX_BENCH_KAFKA=HOST:PORT (scripts/kafka.sh start)");
        return;
    };
    let quick = std::env::var("PRLX_BENCH_QUICK").is_ok();
    let (submissions, rounds) = if quick { (500, 1) } else { (5_000, 3) };
    let client = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pem = public_key_pem(&client.to_public_key());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ways = [
        Way::FileLog,
        Way::KafkaLogAtLeastOnce,
        Way::KafkaLogExactlyOnce,
        Way::FileLogConsentBatches,
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for _ in 0..rounds {
        for (i, way) in ways.iter().enumerate() {
            let elapsed = rt.block_on(run_once(&bootstrap, submissions, &pem, *way));
            rates[i].push(submissions as f64 / elapsed.as_secs_f64());
        }
    }
    println!("{submissions} submissions through the Kafka intake, answered on the reply topic");
    println!("| way | median of {rounds} (submissions/s) | each round |");
    println!("|---|---:|---|");
    for (way, mut rates) in ways.iter().zip(rates) {
        let each: Vec<u64> = rates.iter().map(|r| r.round() as u64).collect();
        rates.sort_by(f64::total_cmp);
        println!("| {way:?} | {:.0} | {each:?} |", rates[rates.len() / 2]);
    }
}

//! The Kafka submissions intake against a real broker, with `kcat` (a client that is not
//! ours) publishing submissions and reading the answers: accepted, the same record published
//! twice answered with the same request and recorded once, a malformed one answered with the
//! field at fault, and a redelivery after the intake restarts answered the same way. Each case
//! runs with the coordinator's log on a file (answers at least once, idempotent) and on the
//! broker (answers and offsets in the log's transactions); on the broker, a coordinator fenced
//! mid-burst by a new one leaves exactly one answer per record.
//!
//! The broker comes from `PRLX_KAFKA_BOOTSTRAP` (`scripts/test.sh` starts one); without it the
//! test says it was skipped and returns.
#![cfg(feature = "kafka")]

use std::io::Write;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use prlx_commands::actor::CoordinatorHandle;
use prlx_commands::kafka_intake::{self, KafkaIntakeConfig, Reply};
use prlx_events::crypto::public_key_pem;
use prlx_events::event::*;
use prlx_events::log::{LogReader, LogUrl};
use prlx_events::{Envelope, Event};
use prlx_tests::harness::client::read_records;

fn bootstrap() -> Option<String> {
    prlx_tests::kafka::bootstrap()
}

fn kcat_publish(bootstrap: &str, topic: &str, key: &str, value: &str) {
    // -K splits key and value at the first occurrence of the delimiter.
    let mut child = Process::new("kcat")
        .args(["-b", bootstrap, "-t", topic, "-P", "-K", "\t"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat is installed (scripts/test.sh installs it)");
    writeln!(child.stdin.take().unwrap(), "{key}\t{value}").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "kcat -P failed: {status}");
}

/// Reads `count` answers from the start of `topic` with kcat (JSON envelope per record).
fn kcat_read(bootstrap: &str, topic: &str, count: usize) -> Vec<(String, Reply)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Process::new("kcat")
            .args([
                "-b",
                bootstrap,
                "-t",
                topic,
                "-C",
                "-o",
                "beginning",
                "-e",
                "-J",
                // Answers written in the log's transactions count once committed.
                "-X",
                "isolation.level=read_committed",
            ])
            .output()
            .expect("kcat runs");
        let got: Vec<(String, Reply)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("kcat -J line");
                let key = v["key"].as_str().unwrap_or_default().to_owned();
                let reply =
                    serde_json::from_str(v["payload"].as_str().expect("payload")).expect("a reply");
                (key, reply)
            })
            .collect();
        if got.len() >= count {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} answers on {topic}: {got:?}",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where the coordinator's log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    /// The embedded file log: the intake answers at least once, idempotently.
    File,
    /// A topic on the broker: answers and offsets commit in the log writer's transactions.
    Kafka,
}

/// A coordinator ready for submissions on a fresh log, and an intake configuration of fresh
/// topics for it.
async fn coordinator(
    log: Log,
    bootstrap: &str,
    dir: &std::path::Path,
) -> (CoordinatorHandle, LogUrl, KafkaIntakeConfig) {
    let mut config = fresh_config(bootstrap);
    let url = match log {
        Log::File => LogUrl::parse(&format!("file://{}", dir.display())).unwrap(),
        Log::Kafka => {
            config.transactional = true;
            let topic = prlx_tests::kafka::fresh_topic("intake", "log");
            LogUrl::parse(&format!("kafka://{bootstrap}/{topic}")).unwrap()
        }
    };
    let handle = prlx_tests::intake::chat_coordinator_on(&url).await;
    (handle, url, config)
}

fn fresh_config(bootstrap: &str) -> KafkaIntakeConfig {
    prlx_tests::intake::fresh_intake_config(bootstrap)
}

fn body(prompt: &str, client_pem: &str, reference: &str) -> String {
    prlx_tests::intake::submission_body(prompt, client_pem, reference)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_submissions_are_answered_once_each_on_the_reply_topic() {
    kcat_submissions_are_answered(Log::File).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_submissions_are_answered_in_the_log_s_transactions() {
    kcat_submissions_are_answered(Log::Kafka).await
}

async fn kcat_submissions_are_answered(log: Log) {
    let Some(bootstrap) = bootstrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (handle, url, config) = coordinator(log, &bootstrap, dir.path()).await;
    kafka_intake::ensure_topics(&config).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let intake = tokio::spawn(kafka_intake::run(handle.clone(), config.clone(), stopped));

    let client = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    // kcat sends one line per record; the JSON string escapes the PEM's newlines.
    let pem = public_key_pem(&client.to_public_key());
    let ok = body("What is the capital of France?", &pem, "order-1");
    kcat_publish(&bootstrap, &config.submissions_topic, "order-1", &ok);
    kcat_publish(&bootstrap, &config.submissions_topic, "order-1", &ok);
    let bad = ok.replace("\"hardware_tier\":1", "\"hardware_tier\":\"one\"");
    assert_ne!(bad, ok);
    kcat_publish(&bootstrap, &config.submissions_topic, "order-2", &bad);

    let answers = kcat_read(&bootstrap, &config.replies_topic, 3);
    assert_eq!(answers.len(), 3, "{answers:?}");
    let (k0, first) = &answers[0];
    let (k1, again) = &answers[1];
    assert_eq!((k0.as_str(), k1.as_str()), ("order-1", "order-1"));
    assert_eq!(first.status, "accepted", "{first:?}");
    assert_eq!(first, again, "the same record twice: the same answer");
    let (k2, rejected) = &answers[2];
    assert_eq!(k2, "order-2");
    assert_eq!(rejected.status, "rejected");
    let error = rejected.error.as_ref().unwrap();
    assert_eq!(
        (error.code.as_str(), error.field.as_deref()),
        ("malformed_request", Some("hardware_tier")),
        "{error:?}"
    );

    // A restarted intake in the same group resumes after what it committed: nothing is
    // answered twice; a record published now is answered.
    stop.send(true).unwrap();
    intake.await.unwrap().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let intake = tokio::spawn(kafka_intake::run(handle.clone(), config.clone(), stopped));
    let second = body("And of Spain?", &pem, "order-3");
    kcat_publish(&bootstrap, &config.submissions_topic, "order-3", &second);
    let answers = kcat_read(&bootstrap, &config.replies_topic, 4);
    assert_eq!(answers.len(), 4, "nothing answered twice: {answers:?}");
    assert_eq!(answers[3].0, "order-3");
    assert_eq!(answers[3].1.request_id, Some(first.request_id.unwrap() + 1));
    stop.send(true).unwrap();
    intake.await.unwrap().unwrap();

    // On the log: two requests, each once, each with its reference as idempotency key and
    // Kafka as its source.
    let state_requests = handle.read_state(|s| s.requests.len()).await.unwrap();
    assert_eq!(state_requests, 2);
    let reader = url.open_reader().unwrap();
    let records = reader.read(0, 1_000).await.unwrap();
    let accepted: Vec<RequestAccepted> = records
        .iter()
        .filter_map(|r| match Envelope::decode(&r.payload).unwrap().event {
            Event::RequestAccepted(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0].idempotency_key.as_deref(), Some("order-1"));
    assert_eq!(
        accepted[0].source,
        IntakeSource::Kafka {
            reference: "order-1".into()
        }
    );
    assert_eq!(accepted[1].idempotency_key.as_deref(), Some("order-3"));
    // The malformed record never reached the core (like a malformed HTTP body).
    assert!(records.iter().all(|r| !matches!(
        Envelope::decode(&r.payload).unwrap().event,
        Event::RequestRejected(_)
    )));
}

/// A general-path task takes the same door: published on the topic, it is accepted with its
/// price and planned (`SubtasksPlanned` in the same decision); bad parameters are answered
/// naming the parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_general_path_task_on_the_topic_is_accepted_and_planned() {
    let Some(bootstrap) = bootstrap() else { return };
    let running = intake(&bootstrap).await;
    let Intake {
        handle,
        config,
        pem,
        ..
    } = &running;
    let params = r#"{"text": "a b a c", "map_shards": 2, "fan_in": 2}"#;
    let task = prlx_tests::intake::class_body("mapreduce.wordcount", params, pem, "task-1");
    kcat_publish(&bootstrap, &config.submissions_topic, "task-1", &task);
    let bad = prlx_tests::intake::class_body(
        "render.tiles",
        r#"{"width": 0, "height": 8, "scene": {"fractal": "julia"}}"#,
        pem,
        "task-2",
    );
    kcat_publish(&bootstrap, &config.submissions_topic, "task-2", &bad);
    let answers = kcat_read(&bootstrap, &config.replies_topic, 2);
    let (_, accepted) = &answers[0];
    assert_eq!(accepted.status, "accepted", "{accepted:?}");
    let id = prlx_events::RequestId(accepted.request_id.unwrap());
    let (_, rejected) = &answers[1];
    let error = rejected.error.as_ref().unwrap();
    assert_eq!(error.field.as_deref(), Some("params.width"), "{error:?}");
    let planned = handle
        .read_state(move |s| {
            s.requests[&id]
                .plan
                .as_ref()
                .map_or(0, |p| p.subtasks.len())
        })
        .await
        .unwrap();
    assert_eq!(planned, 3, "two maps and a reduce");
    running.stopped().await;
}

/// A coordinator on a file log with its Kafka intake running, and a client's key (PEM).
struct Intake {
    handle: CoordinatorHandle,
    config: KafkaIntakeConfig,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), kafka_intake::IntakeError>>,
    pem: String,
    _dir: tempfile::TempDir,
}

async fn intake(bootstrap: &str) -> Intake {
    let dir = tempfile::tempdir().unwrap();
    let (handle, _url, config) = coordinator(Log::File, bootstrap, dir.path()).await;
    kafka_intake::ensure_topics(&config).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(kafka_intake::run(handle.clone(), config.clone(), stopped));
    let client = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pem = public_key_pem(&client.to_public_key());
    Intake {
        handle,
        config,
        stop,
        task,
        pem,
        _dir: dir,
    }
}

impl Intake {
    async fn stopped(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// An outsider who can write to the submissions topic still cannot spend an account: a
/// record signed by any key but the account's is answered `unauthorized` naming `signature`,
/// and nothing is reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_signed_by_another_key_is_refused_on_the_topic() {
    let Some(bootstrap) = bootstrap() else { return };
    let running = intake(&bootstrap).await;
    let Intake {
        handle,
        config,
        pem,
        ..
    } = &running;
    let mut forged: serde_json::Value =
        serde_json::from_str(&body("Spend someone else's credit", pem, "theft-1")).unwrap();
    let stranger = prlx_commands::testkit::accounts::key("outsider");
    forged["idempotency_key"] = "theft-1".into();
    prlx_commands::testkit::accounts::sign_body_as(
        &mut forged,
        &stranger,
        &prlx_commands::consent::ConsentDomain::default(),
    );
    forged.as_object_mut().unwrap().remove("idempotency_key");
    kcat_publish(
        &bootstrap,
        &config.submissions_topic,
        "theft-1",
        &forged.to_string(),
    );
    let answers = kcat_read(&bootstrap, &config.replies_topic, 1);
    let (key, answer) = &answers[0];
    assert_eq!(key, "theft-1");
    assert_eq!(answer.status, "rejected", "{answer:?}");
    let error = answer.error.as_ref().unwrap();
    assert_eq!(
        (error.code.as_str(), error.field.as_deref()),
        ("unauthorized", Some("signature")),
        "{error:?}"
    );
    let reserved = handle
        .read_state(|s| s.accounts.values().map(|a| a.reserved).sum::<u64>())
        .await
        .unwrap();
    assert_eq!(reserved, 0, "nothing reserved from the account");
    running.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegates_records_are_charged_within_its_limit_and_refused_past_it() {
    let Some(bootstrap) = bootstrap() else { return };
    let running = intake(&bootstrap).await;
    let Intake { config, pem, .. } = &running;
    // One request's price (`chat`, 8 tokens: 10 + 8), for an hour.
    let account = prlx_tests::intake::ACCOUNT_NAME;
    let delegation = prlx_commands::testkit::accounts::delegation(
        account,
        account,
        "gateway",
        18,
        u64::try_from(chrono::Utc::now().timestamp()).unwrap() + 3_600,
        &prlx_commands::consent::ConsentDomain::default(),
    );
    for (reference, prompt) in [("via-1", "First?"), ("via-2", "Second?")] {
        let record =
            prlx_tests::intake::delegated_body(prompt, pem, reference, "gateway", &delegation);
        kcat_publish(&bootstrap, &config.submissions_topic, reference, &record);
    }
    let answers = kcat_read(&bootstrap, &config.replies_topic, 2);
    assert_eq!(answers[0].1.status, "accepted", "{answers:?}");
    let error = answers[1].1.error.as_ref().expect("refused past the limit");
    assert_eq!(
        (error.code.as_str(), error.field.as_deref()),
        ("spending_limit_exceeded", Some("delegation.spending_limit")),
        "{error:?}"
    );
    running.stopped().await;
}

/// Publishes `count` submissions keyed `order-0`, `order-1`, …
async fn publish_burst(bootstrap: &str, topic: &str, count: usize, pem: &str) {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    // All queued at once (in order: an idempotent producer keeps it), then acknowledged.
    let mut sent = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("order-{i}");
        let value = body(&format!("question {i}"), pem, &key);
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        sent.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in sent {
        delivery.await.unwrap().unwrap();
    }
}

/// Checks that `answers` are one per record `order-0`..: in record order, accepted, request
/// ids increasing.
fn one_answer_per_record_in_order(answers: &[(String, Reply)]) {
    let mut last_id = None;
    for (i, (key, reply)) in answers.iter().enumerate() {
        assert_eq!(key, &format!("order-{i}"), "answers in record order");
        assert_eq!(reply.status, "accepted", "{reply:?}");
        assert!(reply.request_id > last_id, "request ids in record order");
        last_id = reply.request_id;
    }
}

/// More submissions than the intake decides at once: each is answered once, in record order,
/// with request ids in that order; after a restart nothing is answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_answered_once_each_in_record_order() {
    a_burst_is_answered_once_each(Log::File).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_answered_once_each_in_record_order_in_the_log_s_transactions() {
    a_burst_is_answered_once_each(Log::Kafka).await
}

async fn a_burst_is_answered_once_each(log: Log) {
    let Some(bootstrap) = bootstrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (handle, _url, config) = coordinator(log, &bootstrap, dir.path()).await;
    kafka_intake::ensure_topics(&config).await.unwrap();
    let client = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pem = public_key_pem(&client.to_public_key());
    let burst = kafka_intake::MAX_IN_FLIGHT + 44;
    publish_burst(&bootstrap, &config.submissions_topic, burst, &pem).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let intake = tokio::spawn(kafka_intake::run(handle.clone(), config.clone(), stopped));
    let answers = kcat_read(&bootstrap, &config.replies_topic, burst);
    assert_eq!(answers.len(), burst);
    one_answer_per_record_in_order(&answers);
    stop.send(true).unwrap();
    intake.await.unwrap().unwrap();

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let intake = tokio::spawn(kafka_intake::run(handle.clone(), config.clone(), stopped));
    kcat_publish(
        &bootstrap,
        &config.submissions_topic,
        "late",
        &body("late", &pem, "late"),
    );
    let answers = kcat_read(&bootstrap, &config.replies_topic, burst + 1);
    assert_eq!(answers.len(), burst + 1, "nothing answered twice");
    assert_eq!(answers[burst].0, "late");
    stop.send(true).unwrap();
    intake.await.unwrap().unwrap();
    let requests = handle.read_state(|s| s.requests.len()).await.unwrap();
    assert_eq!(requests, burst + 1);
}

/// Exactly once across a failover: a coordinator on a Kafka log is fenced by a new one while a
/// burst is being decided (what it had not committed is aborted: events, answers and offsets
/// together); the new one's intake reads on from the committed position. Every record is
/// answered once, in order, and accepted once on the log. At least once, idempotently, would
/// answer the redelivered records a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_fenced_mid_burst_leaves_exactly_one_answer_per_record() {
    let Some(bootstrap) = bootstrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (first, url, config) = coordinator(Log::Kafka, &bootstrap, dir.path()).await;
    kafka_intake::ensure_topics(&config).await.unwrap();
    let client = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pem = public_key_pem(&client.to_public_key());
    let burst = 12 * kafka_intake::MAX_IN_FLIGHT;
    publish_burst(&bootstrap, &config.submissions_topic, burst, &pem).await;

    let (_stop_first, stopped) = tokio::sync::watch::channel(false);
    let intake = tokio::spawn(kafka_intake::run(first.clone(), config.clone(), stopped));
    // Fenced once some are decided and most are not.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let decided = loop {
        let decided = first.read_state(|s| s.requests.len()).await.unwrap();
        if decided >= 100 || std::time::Instant::now() > until {
            break decided;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        (100..burst).contains(&decided),
        "fenced after {decided} decisions"
    );
    // The failover: a new writer fences the first coordinator mid-burst; its intake dies
    // with it (as it does with the process).
    let second = prlx_tests::intake::chat_coordinator_on(&url).await;
    intake.abort();
    let _ = intake.await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let intake = tokio::spawn(kafka_intake::run(second.clone(), config.clone(), stopped));
    let answers = kcat_read(&bootstrap, &config.replies_topic, burst);
    // Anything late would be a second answer: give it time to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answers_later = kcat_read(&bootstrap, &config.replies_topic, burst);
    assert_eq!(answers_later.len(), answers.len(), "answers kept coming");
    assert_eq!(answers.len(), burst, "one answer per record");
    one_answer_per_record_in_order(&answers);
    stop.send(true).unwrap();
    intake.await.unwrap().unwrap();

    let mut accepted = Vec::new();
    for r in read_records(&url.open_reader().unwrap(), 0).await {
        if let Event::RequestAccepted(a) = Envelope::decode(&r.payload).unwrap().event {
            accepted.push(a.idempotency_key.unwrap());
        }
    }
    let want: Vec<String> = (0..burst).map(|i| format!("order-{i}")).collect();
    assert_eq!(accepted, want, "each record accepted once, in record order");
    assert_eq!(
        second.read_state(|s| s.requests.len()).await.unwrap(),
        burst
    );
}

//! The log conformance suite on a real Apache Kafka broker, each case on a fresh topic; then
//! what only Kafka has: fencing by transactional id, the URL, a missing topic, side records
//! for other topics in the log's transactions.
//!
//! The broker comes from `PRLX_KAFKA_BOOTSTRAP` (`scripts/test.sh` starts one with
//! `scripts/kafka.sh start` and sets it). Without it every case says it was skipped and returns.
#![cfg(feature = "kafka")]

use std::sync::Arc;
use std::time::Duration;

use prlx_events::log::kafka::{KafkaLogReader, KafkaLogWriter};
use prlx_events::log::{
    AnyReader, AnyWriter, KafkaLogOptions, LogError, LogReader, LogUrl, LogWriter, Side, SideRecord,
};
use prlx_tests::conformance::LogFixture;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

fn bootstrap() -> Option<String> {
    prlx_tests::kafka::bootstrap()
}

fn fresh_topic(tag: &str) -> String {
    prlx_tests::kafka::fresh_topic("test", tag)
}

struct KafkaFixture {
    bootstrap: String,
    topic: String,
    writer: Option<Arc<KafkaLogWriter>>,
}

impl KafkaFixture {
    fn new() -> Option<Self> {
        let bootstrap = bootstrap()?;
        let topic = fresh_topic("conformance");
        let writer = KafkaLogWriter::open(&bootstrap, &topic, KafkaLogOptions::default())
            .unwrap_or_else(|e| panic!("open a writer on {bootstrap}/{topic}: {e}"));
        Some(Self {
            bootstrap,
            topic,
            writer: Some(Arc::new(writer)),
        })
    }

    fn open_writer(&self) -> Result<KafkaLogWriter, LogError> {
        KafkaLogWriter::open(&self.bootstrap, &self.topic, KafkaLogOptions::default())
    }
}

impl LogFixture for KafkaFixture {
    type Writer = KafkaLogWriter;
    type Reader = KafkaLogReader;

    fn writer(&self) -> Arc<KafkaLogWriter> {
        Arc::clone(self.writer.as_ref().unwrap())
    }
    fn open_reader(&self) -> KafkaLogReader {
        KafkaLogReader::open(&self.bootstrap, &self.topic, KafkaLogOptions::default()).unwrap()
    }
    fn reopen_writer(&mut self) {
        let w = self.writer.take().unwrap();
        drop(Arc::into_inner(w).expect("the test holds no other handle"));
        self.writer = Some(Arc::new(self.open_writer().unwrap()));
    }
    fn open_second_writer(&self) -> Result<(), LogError> {
        // Same topic, same transactional id: it fences the first writer.
        self.open_writer().map(drop)
    }
}

prlx_tests::conformance_suite!(match KafkaFixture::new() {
    Some(f) => f,
    None => return,
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_writer_says_so_and_the_new_one_carries_on() {
    let Some(f) = KafkaFixture::new() else { return };
    let first = f.writer();
    let a = first.append(vec![b"first".to_vec()]).await.unwrap();
    let second = f.open_writer().unwrap();
    let late = first.append(vec![b"late".to_vec()]).await.unwrap_err();
    assert!(matches!(late, LogError::Fenced { .. }), "{late}");
    assert!(late.to_string().contains("fenced"), "{late}");
    // Fenced for good: it does not come back by re-creating its producer.
    let again = first.append(vec![b"later".to_vec()]).await.unwrap_err();
    assert!(matches!(again, LogError::Fenced { .. }), "{again}");

    let b = second.append(vec![b"second".to_vec()]).await.unwrap();
    assert!(
        b.start > a.end,
        "a commit marker and the fencing abort lie between"
    );
    let r = f.open_reader();
    let got: Vec<_> = r.read(a.start, 10).await.unwrap();
    let payloads: Vec<_> = got.iter().map(|r| r.payload.as_slice()).collect();
    assert_eq!(payloads, [b"first".as_slice(), b"second".as_slice()]);
    assert_eq!(got[1].offset, b.start);
    assert_eq!(r.end().await.unwrap(), b.end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_urls_open_the_kafka_backend() {
    let Some(bootstrap) = bootstrap() else { return };
    let topic = fresh_topic("url");
    let url = LogUrl::parse(&format!(
        "kafka://{bootstrap}/{topic}?txn_id={topic}-writer&fetch_wait_ms=20"
    ))
    .unwrap();
    let w = url.open_writer().unwrap();
    assert!(
        matches!(w, AnyWriter::Kafka(ref k) if k.transactional_id() == format!("{topic}-writer"))
    );
    let range = w
        .append(vec![b"one".to_vec(), b"two".to_vec()])
        .await
        .unwrap();
    let r = url.open_reader().unwrap();
    assert!(matches!(r, AnyReader::Kafka(_)));
    let got = r.read(range.start, 10).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].payload, b"two");
    let in_process = w.reader();
    assert_eq!(in_process.end().await.unwrap(), range.end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_a_missing_topic_is_an_error_not_an_empty_log() {
    let Some(bootstrap) = bootstrap() else { return };
    let topic = fresh_topic("missing");
    let err = KafkaLogReader::open(&bootstrap, &topic, KafkaLogOptions::default()).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

fn side(topic: &str, payload: &[u8]) -> SideRecord {
    SideRecord {
        topic: topic.to_owned(),
        key: None,
        payload: payload.to_vec(),
    }
}

/// Every payload on `topic` (one partition, `read_committed`), in order.
async fn payloads(bootstrap: &str, topic: &str) -> Vec<Vec<u8>> {
    let r = KafkaLogReader::open(bootstrap, topic, KafkaLogOptions::default()).unwrap();
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let got = r.read(next, 100).await.unwrap();
        let Some(last) = got.last() else { return out };
        next = last.offset + 1;
        out.extend(got.into_iter().map(|r| r.payload));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_records_land_with_their_batch_and_topics_are_made_for_them() {
    let Some(f) = KafkaFixture::new() else { return };
    let (a, b) = (fresh_topic("side-a"), fresh_topic("side-b"));
    let w = f.writer();
    let first = w.append_with_side(
        vec![b"one".to_vec(), b"two".to_vec()],
        Side::records(vec![side(&a, b"a1"), side(&b, b"b1"), side(&a, b"a2")]),
    );
    // Side records only: no offset of the log, an empty range where it stands.
    let only_side = w.append_with_side(Vec::new(), Side::records(vec![side(&b, b"b2")]));
    let third = w.append_with_side(
        vec![b"three".to_vec()],
        Side::records(vec![side(&a, b"a3")]),
    );
    let (first, only_side, third) = (
        first.await.unwrap(),
        only_side.await.unwrap(),
        third.await.unwrap(),
    );
    assert_eq!(first.end - first.start, 2);
    assert!(only_side.is_empty() && only_side.start >= first.end);
    assert!(third.start >= only_side.end);
    assert_eq!(
        payloads(&f.bootstrap, &f.topic).await,
        [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
    assert_eq!(
        payloads(&f.bootstrap, &a).await,
        [b"a1".to_vec(), b"a2".to_vec(), b"a3".to_vec()]
    );
    assert_eq!(
        payloads(&f.bootstrap, &b).await,
        [b"b1".to_vec(), b"b2".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_record_the_broker_refuses_aborts_its_batch_and_every_other_record_with_it() {
    let Some(f) = KafkaFixture::new() else { return };
    let (small, other) = (fresh_topic("side-small"), fresh_topic("side-other"));
    // A topic whose broker refuses records over 1 KiB: a real refusal mid-transaction.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &f.bootstrap)
        .create()
        .unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let made = admin
        .create_topics(
            [&NewTopic::new(&small, 1, TopicReplication::Fixed(1))
                .set("max.message.bytes", "1024")],
            &opts,
        )
        .await
        .unwrap();
    assert!(made.iter().all(Result::is_ok), "{made:?}");

    let w = f.writer();
    let refused = w
        .append_with_side(
            vec![b"doomed".to_vec()],
            Side::records(vec![
                side(&other, b"doomed too"),
                side(&small, &[7u8; 4096]),
            ]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LogError::Kafka { .. }),
        "an abortable refusal: {refused}"
    );
    assert!(refused.to_string().contains("aborted"), "{refused}");
    // Nothing commits after a failed group until the writer is reopened (what was queued
    // behind it may depend on it); what it aborted is seen by no reader of any topic.
    let poisoned = w.append(vec![b"behind".to_vec()]).await.unwrap_err();
    assert!(matches!(poisoned, LogError::Poisoned(_)), "{poisoned}");
    drop(w);
    let w = f.open_writer().unwrap();
    let after = w
        .append_with_side(
            vec![b"kept".to_vec()],
            Side::records(vec![side(&other, b"kept too")]),
        )
        .await
        .unwrap();
    assert_eq!(payloads(&f.bootstrap, &f.topic).await, [b"kept".to_vec()]);
    assert_eq!(payloads(&f.bootstrap, &other).await, [b"kept too".to_vec()]);
    assert!(payloads(&f.bootstrap, &small).await.is_empty());
    assert_eq!(f.open_reader().end().await.unwrap(), after.end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_writer_commits_records_with_its_position_and_a_newer_one_fences_it() {
    use prlx_events::log::kafka::KafkaDerivedWriter;
    let Some(f) = KafkaFixture::new() else { return };
    let name = fresh_topic("derived");
    let (a, b) = (fresh_topic("derived-a"), fresh_topic("derived-b"));
    let open = || {
        let (bootstrap, topic, name) = (f.bootstrap.clone(), f.topic.clone(), name.clone());
        // Blocking calls (init_transactions): off the test's runtime threads.
        tokio::task::spawn_blocking(move || {
            KafkaDerivedWriter::open(&bootstrap, &topic, &name, KafkaLogOptions::default())
        })
    };
    let mut first = open().await.unwrap().unwrap();
    assert_eq!(first.position().unwrap(), 0, "nothing derived yet");
    first
        .commit(vec![side(&a, b"a1"), side(&b, b"b1"), side(&a, b"a2")], 7)
        .await
        .unwrap();
    assert_eq!(first.position().unwrap(), 7);
    // The position survives the writer: a new one resumes there, and fences the old one,
    // whose next commit writes nothing and moves nothing.
    let mut second = open().await.unwrap().unwrap();
    assert_eq!(second.position().unwrap(), 7);
    let fenced = first
        .commit(vec![side(&a, b"zombie")], 99)
        .await
        .unwrap_err();
    assert!(matches!(fenced, LogError::Fenced { .. }), "{fenced}");
    second.commit(vec![side(&b, b"b2")], 12).await.unwrap();
    assert_eq!(second.position().unwrap(), 12);
    assert_eq!(
        payloads(&f.bootstrap, &a).await,
        [b"a1".to_vec(), b"a2".to_vec()]
    );
    assert_eq!(
        payloads(&f.bootstrap, &b).await,
        [b"b1".to_vec(), b"b2".to_vec()]
    );
}

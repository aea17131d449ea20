//! The log conformance suite on a real Apache Kafka broker, each case on a fresh topic; then
//! what only Kafka has: fencing by transactional id, the URL, a missing topic.
//!
//! The broker comes from `PRLX_KAFKA_BOOTSTRAP` (`scripts/test.sh` starts one with
//! `scripts/kafka.sh start` and sets it). Without it every case says it was skipped and returns.
#![cfg(feature = "kafka")]

use std::sync::Arc;

use prlx_events::log::kafka::{KafkaLogReader, KafkaLogWriter};
use prlx_events::log::{
    AnyReader, AnyWriter, KafkaLogOptions, LogError, LogReader, LogUrl, LogWriter,
};
use prlx_tests::conformance::LogFixture;

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

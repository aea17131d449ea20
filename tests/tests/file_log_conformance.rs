//! The log conformance suite on the embedded file backend.

use std::sync::Arc;

use prlx_events::log::file::{FileLogOptions, FileLogReader, FileLogWriter};
use prlx_events::log::LogError;
use prlx_tests::conformance::LogFixture;

struct FileFixture {
    dir: tempfile::TempDir,
    options: FileLogOptions,
    writer: Option<Arc<FileLogWriter>>,
}

impl FileFixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Small segments, so the suite crosses segment boundaries.
        let options = FileLogOptions {
            segment_bytes: 4096,
            ..FileLogOptions::default()
        };
        let writer = Some(Arc::new(
            FileLogWriter::open(dir.path(), options.clone()).unwrap(),
        ));
        Self {
            dir,
            options,
            writer,
        }
    }
}

impl LogFixture for FileFixture {
    type Writer = FileLogWriter;
    type Reader = FileLogReader;

    fn writer(&self) -> Arc<FileLogWriter> {
        Arc::clone(self.writer.as_ref().unwrap())
    }
    fn open_reader(&self) -> FileLogReader {
        FileLogReader::open(self.dir.path(), self.options.clone()).unwrap()
    }
    fn reopen_writer(&mut self) {
        let w = self.writer.take().unwrap();
        drop(Arc::into_inner(w).expect("the test holds no other handle"));
        self.writer = Some(Arc::new(
            FileLogWriter::open(self.dir.path(), self.options.clone()).unwrap(),
        ));
    }
    fn open_second_writer(&self) -> Result<(), LogError> {
        FileLogWriter::open(self.dir.path(), self.options.clone()).map(drop)
    }
}

prlx_tests::conformance_suite!(FileFixture::new());

/// The same suite through the in-process reader, which is woken by the writer, not polling.
mod in_process_reader {
    use super::*;

    struct InProcess(FileFixture);

    impl LogFixture for InProcess {
        type Writer = FileLogWriter;
        type Reader = FileLogReader;
        fn writer(&self) -> Arc<FileLogWriter> {
            self.0.writer()
        }
        fn open_reader(&self) -> FileLogReader {
            self.0.writer.as_ref().unwrap().reader()
        }
        fn reopen_writer(&mut self) {
            self.0.reopen_writer()
        }
        fn open_second_writer(&self) -> Result<(), LogError> {
            self.0.open_second_writer()
        }
    }

    prlx_tests::conformance_suite!(InProcess(FileFixture::new()));
}

/// The file log has no other topics: side records are refused with a reason, and nothing of
/// the batch they came with is appended.
#[tokio::test]
async fn the_file_log_refuses_side_records_and_appends_nothing_of_their_batch() {
    use prlx_events::log::{LogReader, LogUrl, LogWriter, Side, SideRecord};
    let dir = tempfile::tempdir().unwrap();
    let url = LogUrl::parse(&format!("file://{}", dir.path().display())).unwrap();
    let w = url.open_writer().unwrap();
    let side = Side::records(vec![SideRecord {
        topic: "feed".into(),
        key: None,
        payload: b"x".to_vec(),
    }]);
    let err = w
        .append_with_side(vec![b"batch".to_vec()], side)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LogError::SideRecordsUnsupported { backend: "file" }),
        "{err}"
    );
    assert!(err.to_string().contains("Kafka backend"), "{err}");
    // Without side records it is a plain append.
    let range = w
        .append_with_side(vec![b"plain".to_vec()], Side::default())
        .await
        .unwrap();
    assert_eq!(range, 0..1);
    assert_eq!(w.reader().end().await.unwrap(), 1);
    assert_eq!(w.append(Vec::new()).await.unwrap(), 1..1);
}

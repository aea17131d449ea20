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

//! Producing records inside an open transaction and awaiting their delivery reports, for the
//! log's writer and the derived writer alike.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use super::config::PARTITION;
use crate::log::deadline;

/// Waits until librdkafka has let go of every delivered message, so that the flush inside
/// `commit_transaction` finds nothing outstanding.
///
/// Why: a delivery future resolves in the producer's polling thread a moment *before* that
/// thread releases the message. A flush that still counts it waits for the next event on the
/// queue, up to 100 ms (rust-rdkafka's flush loop), and in a transaction there is none: one
/// commit in three or four took 100 ms more than its work. The gap is microseconds, so yielding
/// the thread is enough; after `limit` the commit's own flush takes over.
pub(super) fn settle_deliveries(producer: &FutureProducer, limit: Duration) {
    let until = deadline::after(limit);
    while producer.in_flight_count() > 0 && !deadline::passed(until) {
        std::thread::yield_now();
    }
}

/// Produces `records` (topic, key, payload) in order, each without a key to partition 0 of its
/// topic and with one to the partition the key picks, then awaits every delivery report; the
/// offsets of the first `keep` records, in order.
pub(super) async fn produce_records<'a>(
    producer: &FutureProducer,
    records: impl Iterator<Item = (&'a str, Option<&'a [u8]>, &'a Vec<u8>)>,
    keep: usize,
) -> Result<Vec<i64>, KafkaError> {
    // Deliveries are awaited in production order, so the first `keep` are the ones kept.
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut offsets = Vec::with_capacity(keep);
    let settle = |offset: i64, offsets: &mut Vec<i64>| {
        if offsets.len() < keep {
            offsets.push(offset);
        }
    };
    for (to, key, payload) in records {
        let mut record = FutureRecord::<[u8], [u8]>::to(to).payload(payload.as_slice());
        record = match key {
            Some(key) => record.key(key),
            None => record.partition(PARTITION),
        };
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // librdkafka's local queue is full: wait for the oldest record in flight.
                    match pending.pop_front() {
                        Some(oldest) => settle(delivered(oldest.await)?, &mut offsets),
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
    for delivery in pending {
        settle(delivered(delivery.await)?, &mut offsets);
    }
    Ok(offsets)
}

fn delivered(
    report: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, impl fmt::Debug>,
) -> Result<i64, KafkaError> {
    match report {
        Ok(Ok(delivery)) => Ok(delivery.offset),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

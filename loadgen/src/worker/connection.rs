//! One connection's life on its worker: wait for its slot in the connect ramp, connect, book
//! the outcome, then receive (a subscriber) or hand its socket over and publish (a publisher)
//! until the run stops.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::context::{Shared, WorkerContext};
use super::handover::hand_over;
use super::publisher::publish;
use super::receive_loop::receive;
use super::receiver::Receiver;
use crate::client::{open_with_timeout, ConnectFailure, Writer};
use crate::clock::{monotonic_ns, tokio_instant_at};
use crate::plan::{url_of_connection, ConnectionSpec};

/// One connection: wait for its ramp slot, connect, then receive (and publish) until stopped.
pub async fn run_connection(
    context: Rc<WorkerContext>,
    spec: ConnectionSpec,
    handshakes: Rc<Semaphore>,
) {
    let shared = context.shared.clone();
    let scenario = &shared.scenario;
    if scenario.connect_rate > 0.0 {
        let offset = Duration::from_secs_f64(spec.index as f64 / scenario.connect_rate);
        tokio::time::sleep_until(tokio_instant_at(shared.started_ns) + offset).await;
    }
    let Ok(permit) = handshakes.acquire().await else {
        return;
    };
    let (outcome, begun) = connect(&shared, spec).await;
    drop(permit);
    let (stream, leftover) = match outcome {
        Ok(opened) => opened,
        Err(failure) => {
            count_failure(&context, &failure);
            return;
        }
    };
    count_connected(&context, spec, begun);
    match spec.publisher {
        None => {
            let (read_half, write_half) = stream.into_split();
            let writer = Arc::new(Writer::new(write_half));
            let receiver = Receiver::new(spec, scenario, leftover);
            receive(context.clone(), receiver, read_half, writer).await;
        }
        Some(id) => publish_on(&context, spec, id, stream, leftover).await,
    }
    shared.open_connections.fetch_sub(1, Ordering::Relaxed);
}

/// Opens connection `spec`: its URL, its room's path and its source address, under the connect
/// timeout. Returns the outcome and when the attempt began (monotonic ns).
async fn connect(
    shared: &Shared,
    spec: ConnectionSpec,
) -> (Result<(TcpStream, Vec<u8>), ConnectFailure>, u64) {
    let scenario = &shared.scenario;
    let target = &shared.targets[url_of_connection(spec.index, shared.targets.len())];
    let path = target.path_for_room(spec.room as usize, scenario.rooms as usize);
    let source: Option<IpAddr> = (!scenario.src.is_empty())
        .then(|| scenario.src[(spec.index % scenario.src.len() as u64) as usize]);
    let key_seed = key_seed(spec.index);
    let begun = monotonic_ns();
    let timeout = Duration::from_secs_f64(scenario.connect_timeout_s);
    let outcome = open_with_timeout(target, &path, source, key_seed, timeout).await;
    (outcome, begun)
}

/// Books a failed attempt under its reason, keeping the first message of each reason.
fn count_failure(context: &WorkerContext, failure: &ConnectFailure) {
    let mut stats = context.stats.borrow_mut();
    *stats
        .totals
        .connect_failures
        .entry(failure.key())
        .or_default() += 1;
    stats
        .totals
        .connect_failure_examples
        .entry(failure.key())
        .or_insert_with(|| failure.to_string());
    stats.interval.errors += 1;
    context.shared.attempts_done.fetch_add(1, Ordering::Relaxed);
}

/// Books a connection whose handshake completed (begun at monotonic `begun`) and reports its
/// index to the main thread, which counts each room's receivers for `expected`.
fn count_connected(context: &WorkerContext, spec: ConnectionSpec, begun: u64) {
    let shared = &context.shared;
    {
        let mut stats = context.stats.borrow_mut();
        stats
            .totals
            .connect
            .saturating_record(monotonic_ns().saturating_sub(begun).max(1));
        stats.totals.connected += 1;
        stats.totals.stalled_connected += u64::from(spec.stalled);
    }
    shared.open_connections.fetch_add(1, Ordering::Relaxed);
    shared.connected.fetch_add(1, Ordering::Relaxed);
    if let Ok(sender) = shared.connected_tx.lock() {
        let _ = sender.send(spec.index);
    }
    shared.attempts_done.fetch_add(1, Ordering::Relaxed);
}

/// Publisher `id`'s connection: its socket handed to a receiving worker, then publishing on it
/// until that worker is done with the connection.
async fn publish_on(
    context: &Rc<WorkerContext>,
    spec: ConnectionSpec,
    id: u32,
    stream: TcpStream,
    leftover: Vec<u8>,
) {
    match hand_over(context, spec, stream, leftover).await {
        Some((writer, done)) => {
            let publisher = tokio::task::spawn_local(publish(context.clone(), id, writer));
            // The receiving worker drops `done` once the connection is over.
            let _ = done.await;
            publisher.abort();
        }
        None => {
            // The receiving worker is gone (the run was aborted): nobody can read it.
            let mut stats = context.stats.borrow_mut();
            stats.totals.disconnected += 1;
            stats.interval.errors += 1;
        }
    }
}

/// A distinct 16-byte Sec-WebSocket-Key seed per connection (the key need not be secret).
fn key_seed(index: u64) -> [u8; 16] {
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(&index.to_le_bytes());
    seed[8..].copy_from_slice(&monotonic_ns().to_le_bytes());
    seed
}

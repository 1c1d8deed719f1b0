//! One connection's life on its worker: wait for its slot in the connect ramp, connect, book
//! the outcome, then receive (a subscriber, leaving and coming back under `--churn`) or hand
//! its socket over and publish (a publisher) until the run stops.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::churn::ChurnPlan;
use super::context::{Shared, WorkerContext};
use super::handover::hand_over;
use super::publisher::publish;
use super::receive_loop::{receive, Ending};
use super::receiver::Receiver;
use crate::client::{
    open_with_timeout, with_since, ConnectFailure, ConnectSteps, Opened, Stream, Upgraded, Writer,
};
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
    let url = url_of_connection(spec.index, shared.targets.len());
    // A subscriber asking for recovery learns its position from the start (an empty `since=`).
    let recovering = scenario.recover && spec.publisher.is_none();
    let Ok(permit) = handshakes.acquire().await else {
        return;
    };
    let (outcome, begun) = connect(&shared, spec, url, |path| {
        if recovering {
            with_since(path, None)
        } else {
            path.to_string()
        }
    })
    .await;
    drop(permit);
    let Opened {
        stream,
        upgraded,
        steps,
    } = match outcome {
        Ok(opened) => opened,
        Err(failure) => {
            count_failure(&context, &failure);
            return;
        }
    };
    count_connected(&context, spec, begun, steps, upgraded.deflate);
    match spec.publisher {
        None => {
            let mut receiver = Receiver::new(spec, scenario, upgraded);
            receiver.set_connect_begun(begun);
            subscribe(&context, &mut receiver, spec, stream, &handshakes).await;
            receiver.book(&mut context.stats.borrow_mut());
        }
        Some(id) => {
            publish_on(&context, spec, id, stream, upgraded).await;
            shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A subscriber from its first connection (`stream`) on: receive; under `--churn`, leave on
/// schedule, stay away, reconnect (to the next URL) and receive again, until the run stops or
/// the server ends a connection.
async fn subscribe(
    context: &Rc<WorkerContext>,
    receiver: &mut Receiver,
    spec: ConnectionSpec,
    mut stream: Stream,
    handshakes: &Semaphore,
) {
    let shared = &context.shared;
    let churn = ChurnPlan::of(&shared.scenario, spec, shared.run_id);
    let mut url = url_of_connection(spec.index, shared.targets.len());
    loop {
        let (read_half, write_half) = stream.into_split();
        // A subscriber sends only control frames: nothing to compress.
        let writer = Arc::new(Writer::new(write_half, false));
        let ending = receive(context.clone(), receiver, read_half, writer, churn).await;
        shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        let (Ending::Left(left_ns), Some(plan)) = (ending, churn) else {
            return;
        };
        context.stats.borrow_mut().totals.churn.left += 1;
        // With several URLs the subscriber comes back through the next one, as a client does
        // when its node goes away.
        url = (url + 1) % shared.targets.len().max(1);
        let mut back_ns = left_ns + plan.downtime_ns;
        stream = loop {
            if !away_until(context, back_ns).await {
                return;
            }
            let Ok(permit) = handshakes.acquire().await else {
                return;
            };
            let (outcome, begun) =
                connect(shared, spec, url, |path| receiver.request_path(path)).await;
            drop(permit);
            match outcome {
                Ok(Opened {
                    stream, upgraded, ..
                }) => {
                    receiver.reconnected(upgraded, begun);
                    context.stats.borrow_mut().totals.churn.reconnected += 1;
                    shared.open_connections.fetch_add(1, Ordering::Relaxed);
                    break stream;
                }
                Err(failure) => {
                    // Counted apart from the first connections (which decide `expected`); the
                    // subscriber tries again after another downtime.
                    let mut stats = context.stats.borrow_mut();
                    *stats
                        .totals
                        .churn
                        .reconnect_failures
                        .entry(failure.key())
                        .or_default() += 1;
                    stats.interval.errors += 1;
                    back_ns = monotonic_ns() + plan.downtime_ns;
                }
            }
        };
    }
}

/// Waits until monotonic `ns`; false when the run stops first.
async fn away_until(context: &WorkerContext, ns: u64) -> bool {
    if context.stopping.get() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(tokio_instant_at(ns)) => !context.stopping.get(),
        _ = context.stop_signal.notified() => false,
    }
}

/// Opens connection `spec` to URL `url`: its room's path (`request_path` adds the recovery
/// query) and its source address, under the connect timeout. Returns the outcome and when the
/// attempt began (monotonic ns).
async fn connect(
    shared: &Shared,
    spec: ConnectionSpec,
    url: usize,
    request_path: impl FnOnce(&str) -> String,
) -> (Result<Opened, ConnectFailure>, u64) {
    let scenario = &shared.scenario;
    let target = &shared.targets[url];
    let path = request_path(&target.path_for_room(spec.room as usize, scenario.rooms as usize));
    let source: Option<IpAddr> = (!scenario.src.is_empty())
        .then(|| scenario.src[(spec.index % scenario.src.len() as u64) as usize]);
    let key_seed = key_seed(spec.index);
    let begun = monotonic_ns();
    let timeout = Duration::from_secs_f64(scenario.connect_timeout_s);
    let outcome =
        open_with_timeout(target, &path, source, key_seed, scenario.deflate, timeout).await;
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

/// Books a connection whose handshake completed (begun at monotonic `begun`, its steps taking
/// `steps`, `deflate`: it negotiated permessage-deflate) and reports its index to the main
/// thread, which counts each room's receivers for `expected`.
fn count_connected(
    context: &WorkerContext,
    spec: ConnectionSpec,
    begun: u64,
    steps: ConnectSteps,
    deflate: bool,
) {
    let shared = &context.shared;
    {
        let mut stats = context.stats.borrow_mut();
        stats
            .totals
            .connect
            .saturating_record(monotonic_ns().saturating_sub(begun).max(1));
        stats.totals.connect_steps.record(steps);
        stats.totals.connected += 1;
        stats.totals.deflate_connected += u64::from(deflate);
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
    stream: Stream,
    upgraded: Upgraded,
) {
    match hand_over(context, spec, stream, upgraded).await {
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

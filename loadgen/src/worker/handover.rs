//! A publisher's socket, once connected, goes to a receiving worker: that worker registers it
//! with its own reactor and reads it; the publisher thread keeps the write half and sends. So
//! receive load (every publisher is also a receiver in a chat) cannot delay a send.

use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

use super::context::{ReadSide, WorkerContext};
use super::receive_loop::receive;
use super::receiver::Receiver;
use crate::client::{Stream, Upgraded, Writer};
use crate::plan::ConnectionSpec;

/// Hands a connected publisher's socket to its receiving worker; returns the connection's
/// writer and the signal that the connection is over, or `None` if that worker is gone.
pub async fn hand_over(
    context: &WorkerContext,
    spec: ConnectionSpec,
    stream: Stream,
    upgraded: Upgraded,
) -> Option<(Arc<Writer>, oneshot::Receiver<()>)> {
    let publisher = spec.publisher? as usize;
    let target = context
        .read_sides
        .get(publisher % context.read_sides.len().max(1))?;
    // Off this thread's reactor: only the receiving worker's polls the socket, so arriving
    // messages wake that thread alone; writes from here go straight to the socket and wait on
    // that reactor only when the socket's buffer is full.
    let stream = stream.into_std().ok()?;
    let (writer_tx, writer_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let side = ReadSide {
        spec,
        stream,
        upgraded,
        writer: writer_tx,
        done: done_tx,
    };
    target.send(side).ok()?;
    let writer = writer_rx.await.ok()?;
    Some((writer, done_rx))
}

/// Reads every publisher socket that arrives until the publisher workers are done.
pub async fn read_publishers(
    context: Rc<WorkerContext>,
    mut arriving: UnboundedReceiver<ReadSide>,
) {
    let mut tasks = Vec::new();
    while let Some(side) = arriving.recv().await {
        tasks.push(tokio::task::spawn_local(read_publisher(
            context.clone(),
            side,
        )));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Registers a publisher's socket with this worker's reactor, sends its writer back and
/// receives on it until the run stops or the server goes away.
async fn read_publisher(context: Rc<WorkerContext>, side: ReadSide) {
    let ReadSide {
        spec,
        stream,
        upgraded,
        writer,
        done,
    } = side;
    // A failed registration drops `writer`: the publisher sees it and counts the connection.
    let Ok(stream) = stream.into_tokio() else {
        return;
    };
    let (read_half, write_half) = stream.into_split();
    // What it publishes goes out compressed when the server accepted deflate.
    let shared_writer = Arc::new(Writer::new(write_half, upgraded.deflate));
    if writer.send(shared_writer.clone()).is_err() {
        return;
    }
    let mut receiver = Receiver::new(spec, &context.shared.scenario, upgraded);
    // Publishers do not churn.
    receive(
        context.clone(),
        &mut receiver,
        read_half,
        shared_writer,
        None,
    )
    .await;
    receiver.book(&mut context.stats.borrow_mut());
    drop(done);
}

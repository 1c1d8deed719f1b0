//! The async loop of one connection's receiving side: read as much as the socket holds into
//! the worker's shared 64 KiB buffer, hand each read to the connection's `Receiver`, send its
//! replies, and take part in the closing handshake, at the run's end or when a churning
//! subscriber leaves.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::churn::ChurnPlan;
use super::context::WorkerContext;
use super::receiver::Receiver;
use super::window::Window;
use crate::client::{ReadHalf, Writer, CLOSE_NORMAL};
use crate::clock::{monotonic_ns, tokio_instant_at};

/// How long to wait for the server's close reply (or EOF) after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The run stopped.
    Stopped,
    /// The subscriber left on its churn schedule, at this monotonic time.
    Left(u64),
    /// The server closed it, or it broke.
    Ended,
}

/// Receives on one connection until the run stops (then closes), the subscriber's next churn
/// departure (`churn`: then it closes and leaves) or the server goes away.
pub async fn receive(
    context: Rc<WorkerContext>,
    receiver: &mut Receiver,
    read: ReadHalf,
    writer: Arc<Writer>,
    churn: Option<ChurnPlan>,
) -> Ending {
    let shared = context.shared.clone();
    receiver.set_run_id(shared.run_id);
    let mut window_rx = shared.window.clone();
    let mut window: Option<Arc<Window>> = window_rx.borrow_and_update().clone();
    let connected_ns = monotonic_ns();
    let mut stopping = false;
    let mut deadline = None;
    let mut eof = false;
    // The next departure, looked up once the window is known (the first connection opens
    // before it is); `leaving` once the close is sent.
    let mut leave: Option<Option<u64>> = None;
    let mut leaving = false;
    // Bytes that arrived with the handshake response are the first frames.
    receiver.take_leftover(
        monotonic_ns(),
        window.as_deref(),
        &mut context.stats.borrow_mut(),
    );
    if read.holds_plaintext() {
        eof = drain_socket(&context, receiver, &read, window.as_deref());
    }
    loop {
        if window.is_none() && window_rx.has_changed().unwrap_or(false) {
            window = window_rx.borrow_and_update().clone();
        }
        let replies = receiver.take_replies();
        if !replies.is_empty() && writer.send(&replies).await.is_err() {
            break;
        }
        if eof || receiver.finished() {
            break;
        }
        if let (None, Some(plan), Some(w)) = (leave, churn, window.as_deref()) {
            leave = Some(plan.next_leave(w, connected_ns));
        }
        // Checked here and woken below: no other task of this thread runs in between, so the
        // signal cannot slip past.
        if !stopping && !leaving && context.stopping.get() {
            stopping = true;
            // A stalled receiver first reads what piled up behind it: whether the server closed
            // it (1008, or EOF) is only seen at the end of that backlog, so it does not close
            // first; it reads until the server's close, EOF or the deadline.
            if !receiver.stalled() && writer.close(CLOSE_NORMAL).await.is_err() {
                break;
            }
            deadline = Some(tokio::time::Instant::now() + CLOSE_WAIT);
        }
        // After the stop check, so a stalled receiver reads again as soon as the run stops.
        let stalled_now = receiver.stalled()
            && !stopping
            && window
                .as_ref()
                .is_some_and(|w| monotonic_ns() >= w.measure_start_ns);
        let leave_at = leave.flatten().filter(|_| !leaving && !stopping);
        tokio::select! {
            ready = read.readable(), if !stalled_now => {
                if ready.is_err() {
                    eof = true;
                    continue;
                }
                // The window may have been set while this receiver waited: a publisher sends
                // only once it has the window, so looking again here sees it before the first
                // message (with --warmup 0 that message is measured; read with no window, it
                // was left out at every receiver and counted lost).
                if window.is_none() && window_rx.has_changed().unwrap_or(false) {
                    window = window_rx.borrow_and_update().clone();
                }
                eof = drain_socket(&context, receiver, &read, window.as_deref());
            }
            // Leaving is a normal close: what arrives until the server's close reply is still
            // read and counted.
            _ = tokio::time::sleep_until(tokio_instant_at(leave_at.unwrap_or(0))), if leave_at.is_some() => {
                leaving = true;
                if writer.close(CLOSE_NORMAL).await.is_err() {
                    break;
                }
                deadline = Some(tokio::time::Instant::now() + CLOSE_WAIT);
            }
            _ = context.stop_signal.notified(), if !stopping => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => break,
        }
    }
    let we_closed = stopping || leaving;
    finish(&context, receiver, &writer, we_closed, eof).await;
    match (leaving, leave.flatten()) {
        (true, Some(at)) => Ending::Left(at),
        _ if stopping => Ending::Stopped,
        _ => Ending::Ended,
    }
}

/// Reads until the socket would block, feeding every chunk to the frame walker. Returns true at
/// EOF or a read error.
fn drain_socket(
    context: &WorkerContext,
    receiver: &mut Receiver,
    read: &ReadHalf,
    window: Option<&Window>,
) -> bool {
    let mut buffer = context.read_buffer.borrow_mut();
    let mut stats = context.stats.borrow_mut();
    let counting = !receiver.stalled();
    read.drain(&mut buffer, |bytes| {
        // One clock read per buffer: every frame in it arrived by now.
        let now = monotonic_ns();
        receiver.take_bytes(bytes, now, window, &mut stats, counting);
        !receiver.finished()
    })
}

/// Books how the connection ended and answers a server-initiated close (`we_closed`: the run's
/// stop or a churn departure started the closing handshake).
async fn finish(
    context: &WorkerContext,
    receiver: &Receiver,
    writer: &Writer,
    we_closed: bool,
    eof: bool,
) {
    let closed_by_server = !we_closed && (eof || receiver.finished());
    if let (Some(code), false) = (receiver.server_close(), we_closed) {
        // Echo the close (RFC 6455 5.5.1); the connection ends either way.
        let _ = writer.close(code).await;
    }
    let mut stats = context.stats.borrow_mut();
    if receiver.stalled() {
        // Stalled receivers never close first (see above): any close or EOF is the server's.
        let server_ended_it = eof || receiver.finished();
        stats.totals.stalled_closed_by_server += u64::from(server_ended_it);
    } else if closed_by_server {
        stats.totals.disconnected += 1;
        stats.interval.errors += 1;
    }
}

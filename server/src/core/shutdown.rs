//! Graceful shutdown of one core: close 1001 to every client, wait until they are gone or the
//! grace period ends, then shut down whatever is left.

use std::time::{Duration, Instant};

use crate::budget::wait_for_room;
use crate::clock::deadline_after;
use crate::fanout::Hub;
use crate::input::Reader;
use crate::output::WriteDriver;
use crate::ws::CloseCode;

/// After the grace period, how long tasks get to observe the final shutdown(Both).
const FINAL_DRAIN: Duration = Duration::from_millis(200);

/// Closes every connection of `hub` with 1001 within `grace`, then shuts down the rest and
/// lets `writer`'s writes in flight complete.
pub async fn drain(hub: &Hub, reader: &Reader, writer: &WriteDriver, grace: Duration) {
    let deadline = deadline_after(Instant::now(), grace);
    hub.for_each_subscriber(|subscriber| {
        subscriber.close_within(CloseCode::GoingAway, "server shutting down", grace);
    });
    wait_for_connections(hub, reader, deadline).await;
    hub.for_each_subscriber(|subscriber| subscriber.shutdown_socket());
    let final_deadline = Instant::now() + FINAL_DRAIN;
    wait_for_connections(hub, reader, final_deadline).await;
    // Writes still in flight point into frames this core is about to free: let the kernel
    // complete them (their sockets are shut down, so they fail at once).
    wait_for_room(|| writer.in_flight() == 0, Some(final_deadline)).await;
}

/// Waits until the core has no WebSocket connection left or `deadline` passes.
async fn wait_for_connections(hub: &Hub, reader: &Reader, deadline: Instant) {
    while hub.subscriber_count() > 0 {
        if tokio::time::timeout_at(deadline.into(), reader.connection_ended())
            .await
            .is_err()
        {
            return;
        }
    }
}

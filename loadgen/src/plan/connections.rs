//! Which connection is what. Connection `index` (subscribers 0..N, then publishers N..N+P) has a
//! role, a room and a URL that follow from the scenario and the index alone, so the workers, the
//! receivers and the report all derive them alike:
//!
//! - subscriber j is in room j mod K; publisher i is in room i mod K (and receives there too);
//! - connection `index` uses URL `index mod U`, so publisher p is on URL (N + p) mod U.

use super::scenario::Scenario;

/// What one connection is.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSpec {
    /// Global index: subscribers 0..N, then publishers N..N+P.
    pub index: u64,
    /// Room of this connection.
    pub room: u64,
    /// Publisher id when it sends.
    pub publisher: Option<u32>,
    /// Stops reading after the warm-up.
    pub stalled: bool,
}

impl ConnectionSpec {
    /// The role of connection `index` in `scenario` (see the module docs).
    pub fn of(scenario: &Scenario, index: u64) -> ConnectionSpec {
        let rooms = scenario.rooms.max(1);
        if index < scenario.subscribers {
            ConnectionSpec {
                index,
                room: index % rooms,
                publisher: None,
                stalled: index < scenario.stalled_subscribers(),
            }
        } else {
            let publisher = index - scenario.subscribers;
            ConnectionSpec {
                index,
                room: publisher % rooms,
                publisher: Some(publisher as u32),
                stalled: false,
            }
        }
    }
}

/// The URL (index into `--url`s) connection `index` uses, of `urls` URLs.
pub fn url_of_connection(index: u64, urls: usize) -> usize {
    (index % urls.max(1) as u64) as usize
}

/// The URL publisher `publisher` of `scenario` uses.
pub fn url_of_publisher(scenario: &Scenario, publisher: u32) -> usize {
    url_of_connection(
        scenario.subscribers + u64::from(publisher),
        scenario.urls.len(),
    )
}

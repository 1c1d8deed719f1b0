//! What benches, fuzz targets and tests reach of the server's insides, and the fixtures they
//! build on (each defined in the layer it builds: `output::testing`, `fanout::hub::testing`).
//! Only with the `testing` feature (and in the crate's own tests): production builds do not
//! carry it.

pub use crate::budget::{FanoutBudget, LocalFrame, FRAME_HANDLE_BYTES};
pub use crate::fanout::testing::TestCore;
pub use crate::fanout::{home_core, Hub, Mail, Room};
pub use crate::metrics::CoreMetrics;
pub use crate::output::testing::{
    attach_stub, detached, drain, held_handles, standalone_core_output,
};
pub use crate::output::{flush_now, CoreOutput, Sent, Subscriber};
pub use crate::ws::{encode_message, ClientEvent, CloseCode, Decoded, FrameDecoder, MessageKind};

use crate::{Config, Faults, Server, StartError};

/// [`Server::start`] with core `core` panicking before it reports ready.
pub fn start_with_failing_core(config: Config, core: usize) -> Result<Server, StartError> {
    Server::launch(
        config,
        Faults {
            fail_core: Some(core),
        },
    )
}

//! One WebSocket client connection: opening it (over TLS for `wss://`, permessage-deflate
//! offered with `--deflate`),
//! writing its frames, parsing the server's, the stamp its messages carry and the payloads
//! around it, the recovery query and the server's first message.

mod connect;
mod deflate;
mod failure;
mod frames;
mod handshake;
mod payload;
mod position;
mod preflight;
mod stamp;
mod stream;
mod target;
mod tls;
mod writer;

pub use connect::{open_with_timeout, ConnectSteps, Opened};
pub use deflate::{accepted, Deflater, Inflater, MIN_COMPRESSED, OFFER};
pub use failure::ConnectFailure;
pub use frames::{parse_frame, Parsed, StreamError, MAX_SERVER_MESSAGE};
pub use handshake::Upgraded;
pub use payload::{PayloadKind, Payloads, MIN_JSON_SIZE};
pub use position::{with_since, FirstMessage, Position};
pub use preflight::{preflight, raise_fd_limit};
pub use stamp::{Stamp, STAMP_LEN};
pub use stream::{ReadHalf, Stream};
pub use target::{parse_source_pool, Target, TLS_SCHEME};
pub use tls::client_config;
pub use writer::{Writer, CLOSE_NORMAL};

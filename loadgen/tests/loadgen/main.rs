//! Integration tests of loadgen: runs against a ringcast server started in this process
//! (`ringcast`), `--churn` and `--recover` against it and against a recovering test server
//! (`churn`), runs no connection of which can succeed (`abort`), and the report files,
//! `compare` and `merge` on made-up reports (`reports`), permessage-deflate and the JSON payload
//! (`deflate`), `wss://` against ringcast's own TLS (`tls`). One test binary (one link step) with a
//! `util` module.

mod util;

mod abort;
mod churn;
mod deflate;
mod reports;
mod ringcast;
mod tls;

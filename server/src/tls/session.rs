//! One connection's TLS state over rustls' unbuffered (sans-IO) API: bytes the socket gave go
//! in ([`TlsSession::receive`], which yields the plaintext), plaintext to send is sealed into a
//! buffer the caller writes ([`TlsSession::seal`]). The session does no IO and holds no buffer
//! of its own beyond an incomplete record and the handshake records not sent yet, so the
//! shared plaintext frames stay shared until the flush step seals one connection's batch.

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
    WriteTraffic,
};

/// What a connection's received bytes led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The connection goes on (the handshake may still be running).
    Open,
    /// The peer sent close_notify: no more data will come.
    Closed,
}

/// Why a session failed: the peer's TLS was wrong or unacceptable (a bad record, a failed
/// handshake), or sealing was refused (the session is not established or closed).
pub type TlsError = rustls::Error;

/// One connection's TLS session.
pub struct TlsSession {
    /// rustls' state machine.
    conn: UnbufferedServerConnection,
    /// Received bytes that do not make a whole record yet (empty most of the time: freed once
    /// the record is complete).
    incoming: Vec<u8>,
    /// Records rustls produced outside a seal (handshake flights, alerts, key-update replies),
    /// waiting for the connection's next write.
    outgoing: Vec<u8>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.conn.is_handshaking())
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.outgoing.len())
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A session at the start of its handshake.
    pub fn new(conn: UnbufferedServerConnection) -> Self {
        TlsSession {
            conn,
            incoming: Vec::new(),
            outgoing: Vec::new(),
        }
    }

    /// True until the handshake completed.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True when records wait to be sent ([`TlsSession::take_outgoing`]).
    pub fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Appends the records waiting to be sent to `out`.
    pub fn take_outgoing(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.outgoing);
        } else {
            out.append(&mut self.outgoing);
        }
    }

    /// Takes `data` (bytes read from the socket; decrypted in place where rustls can) and
    /// appends the application data it completes to `plain`. Handshake records to send go to
    /// the outgoing records. An incomplete record is kept for the next call.
    pub fn receive(&mut self, data: &mut [u8], plain: &mut Vec<u8>) -> Result<Received, TlsError> {
        contain_panic(|| self.receive_unguarded(data, plain))
    }

    /// [`TlsSession::receive`] without the panic guard.
    fn receive_unguarded(
        &mut self,
        data: &mut [u8],
        plain: &mut Vec<u8>,
    ) -> Result<Received, TlsError> {
        if self.incoming.is_empty() {
            let (consumed, received) = self.process(data, plain)?;
            self.incoming.extend_from_slice(&data[consumed..]);
            return Ok(received);
        }
        let mut held = std::mem::take(&mut self.incoming);
        held.extend_from_slice(data);
        let (consumed, received) = self.process(&mut held, plain)?;
        held.drain(..consumed);
        if !held.is_empty() {
            self.incoming = held;
        }
        Ok(received)
    }

    /// Runs rustls over `buffer` until it needs more bytes: returns how many it consumed.
    fn process(
        &mut self,
        buffer: &mut [u8],
        plain: &mut Vec<u8>,
    ) -> Result<(usize, Received), TlsError> {
        let mut consumed = 0;
        loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut buffer[consumed..]);
            let mut discard = discard;
            let state = match state {
                Ok(state) => state,
                // rustls may still refer to the bytes it has not discarded (a handshake
                // message split across records): it gets exactly those, never an empty
                // buffer (fuzz/artifacts' 15-byte input panicked rustls that way).
                Err(error) => return Err(self.failed(error, &mut buffer[consumed + discard..])),
            };
            let next = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record?;
                        discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut self.outgoing, |out| encode.encode(out))?;
                    None
                }
                // Sent with the connection's next write.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => Some(Received::Closed),
                // Established and nothing left to read, or the handshake waits for the peer.
                ConnectionState::WriteTraffic(_) | ConnectionState::BlockedHandshake => {
                    Some(Received::Open)
                }
                // 0-RTT is never offered (max_early_data_size stays 0); any other state is
                // one this rustls added since: treated as a failure, not skipped.
                other => {
                    return Err(rustls::Error::General(format!(
                        "unexpected TLS state {other:?}"
                    )))
                }
            };
            consumed += discard;
            if let Some(received) = next {
                return Ok((consumed, received));
            }
        }
    }

    /// The session failed with `error`: queues the alert rustls has for the peer (a
    /// handshake_failure, no_application_protocol...) with the outgoing records, so whoever
    /// writes them tells the client why before closing.
    /// `rest`: the bytes rustls has not discarded.
    fn failed(&mut self, error: TlsError, rest: &mut [u8]) -> TlsError {
        // rustls hands out what it queued (the ServerHello flight, then the alert) only from
        // `process_tls_records`, which then reads records again: any left in `rest` (the bad
        // one, or bytes after it) would fail a second time, and rustls asserts against a
        // second fatal alert; an empty buffer while it still points into bytes it kept (a
        // handshake message split across records) is out of range. Both are avoided by taking
        // the alert only when nothing is left: a handshake the server refused (no ALPN match,
        // no common version or cipher). A connection that sent bytes rustls could not read is
        // closed without one.
        if !rest.is_empty() {
            return error;
        }
        loop {
            match self.conn.process_tls_records(rest).state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    // No room for the alert means no alert: the connection ends either way.
                    if encode_into(&mut self.outgoing, |out| encode.encode(out)).is_err() {
                        return error;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => return error,
            }
        }
    }

    /// Appends the outgoing records and then `plaintext`, sealed into records, to `out`.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        contain_panic(|| self.seal_unguarded(plaintext, out))
    }

    /// Appends the outgoing records and a close_notify alert to `out`: the stream ends here.
    pub fn close(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        contain_panic(|| {
            self.write_traffic(out, |traffic, out| {
                write_grown(
                    out,
                    RECORD_OVERHEAD,
                    |spare| traffic.queue_close_notify(spare),
                    encrypt_needed,
                )
            })
        })
    }

    /// [`TlsSession::seal`] without the panic guard.
    fn seal_unguarded(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        self.write_traffic(out, |traffic, out| {
            if plaintext.is_empty() {
                return Ok(());
            }
            encrypt_into(out, plaintext.len(), |spare| {
                traffic.encrypt(plaintext, spare)
            })
        })
    }

    /// Appends the outgoing records to `out`, then runs `write` with the established session.
    fn write_traffic(
        &mut self,
        out: &mut Vec<u8>,
        mut write: impl FnMut(
            &mut WriteTraffic<'_, ServerConnectionData>,
            &mut Vec<u8>,
        ) -> Result<(), TlsError>,
    ) -> Result<(), TlsError> {
        self.take_outgoing(out);
        loop {
            // rustls is given the bytes it has not discarded (`receive` processed every whole
            // record in them, so it finds nothing new to read there).
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let sealed = match state? {
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(out, |spare| encode.encode(spare))?;
                    false
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    false
                }
                ConnectionState::WriteTraffic(mut traffic) => {
                    write(&mut traffic, out)?;
                    true
                }
                other => {
                    return Err(rustls::Error::General(format!(
                        "cannot send in TLS state {other:?}"
                    )))
                }
            };
            self.incoming.drain(..discard);
            if sealed {
                return Ok(());
            }
        }
    }
}

/// Runs `step` of a session; a panic inside rustls becomes an error that ends this connection
/// (the caller drops the session) instead of taking the core thread and every connection on
/// it down. The panic hook still prints it, and the fuzz targets (whose hook aborts) still
/// catch it: this is a second line, the first is giving rustls what its API asks for.
fn contain_panic<T>(step: impl FnOnce() -> Result<T, TlsError>) -> Result<T, TlsError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step))
        .unwrap_or_else(|_| Err(rustls::Error::General("rustls panicked".into())))
}

/// Most bytes a record adds to its plaintext: header (5), TLS 1.3's content type (1) and the
/// AEAD tag (16), or TLS 1.2's explicit nonce (8) and tag (16); rounded up.
const RECORD_OVERHEAD: usize = 32;
/// Largest plaintext of one record (RFC 8446 5.1).
const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;

/// Appends a handshake record `encode` writes (it says how much room it needs).
fn encode_into(
    out: &mut Vec<u8>,
    encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), TlsError> {
    write_grown(out, 0, encode, |error| match error {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Ok(*required_size)
        }
        other => Err(rustls::Error::General(format!("TLS encode: {other}"))),
    })
}

/// Appends the records `encrypt` seals `len` plaintext bytes into.
fn encrypt_into(
    out: &mut Vec<u8>,
    len: usize,
    encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), TlsError> {
    let records = len.div_ceil(MAX_RECORD_PLAINTEXT).max(1);
    write_grown(
        out,
        len + records * RECORD_OVERHEAD,
        encrypt,
        encrypt_needed,
    )
}

/// The room an encryption asked for, or why it failed.
fn encrypt_needed(error: &EncryptError) -> Result<usize, TlsError> {
    match error {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Ok(*required_size)
        }
        other => Err(rustls::Error::General(format!("TLS encrypt: {other}"))),
    }
}

/// Runs `write` on `guess` zeroed bytes appended to `out` (trimmed to what it wrote); when it
/// asks for more room (`needed` says how much, or why it failed), once more with that room.
fn write_grown<E>(
    out: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    needed: impl Fn(&E) -> Result<usize, TlsError>,
) -> Result<(), TlsError> {
    let start = out.len();
    let mut room = guess;
    for _ in 0..2 {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(written) => {
                out.truncate(start + written);
                return Ok(());
            }
            Err(error) => room = needed(&error)?,
        }
    }
    out.truncate(start);
    Err(rustls::Error::General(
        "TLS record larger than it said".into(),
    ))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::tls::testing::{acceptor, client_with_alpn, established, from_client, to_client};

    #[test]
    fn handshake_then_both_ways_whatever_the_read_sizes() {
        for chunk in [1, 7, 4096] {
            let (mut session, mut client) = established(chunk);
            assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));
            client.writer().write_all(&[b'a'; 40_000]).unwrap();
            client.writer().write_all(b"end").unwrap();
            let mut wire = from_client(&mut client);
            let mut plain = Vec::new();
            for part in wire.chunks_mut(chunk) {
                session.receive(part, &mut plain).unwrap();
            }
            assert_eq!(plain.len(), 40_003, "read {chunk} bytes at a time");
            assert!(plain.ends_with(b"aend"));
            let mut records = Vec::new();
            session.seal(b"frame one", &mut records).unwrap();
            session.seal(&[b'z'; 70_000], &mut records).unwrap();
            let got = to_client(&mut client, &records);
            assert_eq!(got.len(), 9 + 70_000);
            assert!(got.starts_with(b"frame one"));
        }
    }

    #[test]
    fn garbage_fails_the_session() {
        let mut session = acceptor().session().unwrap();
        let mut plain = Vec::new();
        let mut garbage = *b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(session.receive(&mut garbage, &mut plain).is_err());
        // Bytes rustls could not read: closed without an alert (see `failed`).
        assert!(!session.has_outgoing());
        assert!(plain.is_empty());
    }

    #[test]
    fn a_bad_record_after_a_partial_handshake_message_fails_without_panicking() {
        // fuzz/artifacts/tls_upgrade/crash-minimal: a ClientHello record of 5 bytes claiming
        // 206, then a record of type 0xff. rustls kept a position in the first record and
        // panicked when it was then given an empty buffer to report the error.
        let mut session = acceptor().session().unwrap();
        let mut plain = Vec::new();
        let mut input = [
            0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0xce, 0x03, 0xff, 0x03, 0x03, 0x00,
            0x00,
        ];
        // Unguarded: the panic guard must not be what makes this pass.
        assert!(session.receive_unguarded(&mut input, &mut plain).is_err());
    }

    #[test]
    fn a_record_rustls_refuses_is_alerted_once() {
        // fuzz/artifacts/tls_upgrade/crash-16407c72...: a ChangeCipherSpec record before any
        // ClientHello. Reporting the error read the record again and failed a second time:
        // rustls' debug assertion against a second fatal alert fired (debug builds, fuzzing).
        for input in [
            &[0x14, 0x03, 0x03, 0x00, 0x01, 0x01][..],
            &[0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x16, 0x03],
        ] {
            let mut session = acceptor().session().unwrap();
            let mut input = input.to_vec();
            assert!(session
                .receive_unguarded(&mut input, &mut Vec::new())
                .is_err());
        }
    }

    #[test]
    fn a_client_without_http11_in_alpn_gets_the_alert() {
        let mut session = acceptor().session().unwrap();
        let mut h2_only = client_with_alpn(&[b"h2"]);
        let mut hello = from_client(&mut h2_only);
        let error = session.receive(&mut hello, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(error, rustls::Error::NoApplicationProtocol),
            "{error:?}"
        );
        // TLS 1.3 chooses ALPN after the ServerHello: the alert goes encrypted after it, and
        // every queued record must go out for the client to read it.
        let mut records = Vec::new();
        session.take_outgoing(&mut records);
        let mut rest = &records[..];
        let mut read = Ok(());
        while !rest.is_empty() && read.is_ok() {
            h2_only.read_tls(&mut rest).unwrap();
            read = h2_only.process_new_packets().map(drop);
        }
        assert_eq!(
            read,
            Err(rustls::Error::AlertReceived(
                rustls::AlertDescription::NoApplicationProtocol
            ))
        );
    }

    #[test]
    fn close_notify_ends_the_stream() {
        let (mut session, mut client) = established(4096);
        client.send_close_notify();
        let mut wire = from_client(&mut client);
        let mut plain = Vec::new();
        assert_eq!(
            session.receive(&mut wire, &mut plain).unwrap(),
            Received::Closed
        );
    }

    #[test]
    fn close_sends_close_notify() {
        let (mut session, mut client) = established(4096);
        let mut records = Vec::new();
        session.seal(b"bye", &mut records).unwrap();
        session.close(&mut records).unwrap();
        assert_eq!(to_client(&mut client, &records), b"bye");
        let state = client.process_new_packets().unwrap();
        assert!(state.peer_has_closed(), "the client read close_notify");
    }

    #[test]
    fn sealing_before_the_handshake_is_refused() {
        let mut session = acceptor().session().unwrap();
        assert!(session.seal(b"too early", &mut Vec::new()).is_err());
    }
}

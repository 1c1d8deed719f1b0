//! An open connection's socket and, for a `wss://` URL, its TLS session; split into the
//! receive loop's half and the writer's. A plain connection's halves are tokio's own, read and
//! written as before; a TLS connection's halves share the session under a lock held only
//! while bytes are sealed or opened, never across an await.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::ClientConnection;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

thread_local! {
    /// The records read off a TLS socket before rustls opens them: one buffer per worker
    /// thread, as the plaintext read buffer is.
    static SEALED: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// A connected, upgraded socket (`S`: tokio's, or std's while a publisher's socket moves to
/// the worker that reads it) with its TLS session, if any.
pub struct Stream<S = TcpStream> {
    /// The TCP socket.
    pub tcp: S,
    /// The TLS session of a `wss://` connection.
    pub tls: Option<Box<ClientConnection>>,
}

impl Stream {
    /// Takes the socket off this thread's reactor, to be registered with another's.
    pub fn into_std(self) -> std::io::Result<Stream<std::net::TcpStream>> {
        Ok(Stream {
            tcp: self.tcp.into_std()?,
            tls: self.tls,
        })
    }

    /// The receive loop's half and the writer's.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        let (read, write) = self.tcp.into_split();
        let session = self.tls.map(|session| Arc::new(Mutex::new(*session)));
        (
            ReadHalf {
                half: read,
                tls: session.clone(),
            },
            WriteHalf {
                half: write,
                tls: session.map(|session| (session, Vec::new())),
            },
        )
    }
}

impl Stream<std::net::TcpStream> {
    /// Registers the socket with this thread's reactor.
    pub fn into_tokio(self) -> std::io::Result<Stream> {
        Ok(Stream {
            tcp: TcpStream::from_std(self.tcp)?,
            tls: self.tls,
        })
    }
}

/// The session, even if a thread panicked holding it (the connection then fails on its own).
fn lock(session: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    session
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The reading side of a connection.
pub struct ReadHalf {
    /// The socket's read half.
    half: OwnedReadHalf,
    /// The session shared with the writer (TLS only).
    tls: Option<Arc<Mutex<ClientConnection>>>,
}

impl ReadHalf {
    /// Waits until the socket has something to read.
    pub async fn readable(&self) -> std::io::Result<()> {
        self.half.readable().await
    }

    /// Reads until the socket would block, handing each run of plaintext (read into `buffer`)
    /// to `take`, which answers whether to read on. Returns true at EOF or a read error (a TLS
    /// alert, a broken record, the server's close_notify included).
    pub fn drain(&self, buffer: &mut [u8], take: impl FnMut(&[u8]) -> bool) -> bool {
        match &self.tls {
            None => self.drain_plain(buffer, take),
            Some(session) => {
                SEALED.with_borrow_mut(|sealed| self.drain_tls(session, sealed, buffer, take))
            }
        }
    }

    /// `drain` of a plain socket: straight into `buffer`.
    fn drain_plain(&self, buffer: &mut [u8], mut take: impl FnMut(&[u8]) -> bool) -> bool {
        loop {
            match self.half.try_read(buffer) {
                Ok(0) => return true,
                Ok(read) => {
                    if !take(&buffer[..read]) || read < buffer.len() {
                        return false;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }

    /// `drain` of a TLS socket: records into `sealed`, opened into `buffer`.
    fn drain_tls(
        &self,
        shared: &Mutex<ClientConnection>,
        sealed: &mut [u8],
        buffer: &mut [u8],
        mut take: impl FnMut(&[u8]) -> bool,
    ) -> bool {
        // The records read off the socket and not yet given to rustls: `sealed[at..end]`.
        let (mut at, mut end) = (0, 0);
        let mut socket_drained = false;
        loop {
            // What the session holds opened goes to the receiver first: after the upgrade it
            // may already hold the first frames, and rustls takes only a few KiB of records
            // at a time, so its plaintext buffer never fills.
            let mut session = lock(shared);
            loop {
                match session.reader().read(buffer) {
                    // The server's close_notify.
                    Ok(0) => return true,
                    Ok(opened) => {
                        // Unlocked while the receiver walks it: the writer may seal meanwhile.
                        drop(session);
                        if !take(&buffer[..opened]) {
                            return false;
                        }
                        session = lock(shared);
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => return true,
                }
            }
            if at == end {
                drop(session);
                if socket_drained {
                    return false;
                }
                match self.half.try_read(sealed) {
                    Ok(0) => return true,
                    Ok(read) => {
                        (at, end) = (0, read);
                        socket_drained = read < sealed.len();
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return false,
                    Err(_) => return true,
                }
                session = lock(shared);
            }
            let mut records = &sealed[at..end];
            if session.read_tls(&mut records).is_err() || session.process_new_packets().is_err() {
                return true;
            }
            at = end - records.len();
        }
    }

    /// Whether the TLS session already holds opened bytes: read with the upgrade's response,
    /// they wait for no socket wakeup (a plain socket holds nothing of its own).
    pub fn holds_plaintext(&self) -> bool {
        self.tls.as_deref().is_some_and(|shared| {
            lock(shared)
                .process_new_packets()
                .is_ok_and(|state| state.plaintext_bytes_to_read() > 0)
        })
    }
}

/// The writing side of a connection.
pub struct WriteHalf {
    /// The socket's write half.
    half: OwnedWriteHalf,
    /// The session shared with the reader and this half's sealed records, reused (TLS only).
    tls: Option<(Arc<Mutex<ClientConnection>>, Vec<u8>)>,
}

impl WriteHalf {
    /// Writes `data` whole: as it is, or sealed into TLS records in one buffer and written
    /// in one go.
    pub async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        let Some((session, sealed)) = &mut self.tls else {
            return self.half.write_all(data).await;
        };
        {
            let mut session = lock(session);
            session.writer().write_all(data)?;
            // Also what the reader left to send (a key update's answer, an alert).
            while session.wants_write() {
                session.write_tls(sealed)?;
            }
        }
        let written = self.half.write_all(sealed).await;
        sealed.clear();
        written
    }
}

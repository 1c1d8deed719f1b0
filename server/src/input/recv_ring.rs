//! The io_uring backend's receives: one multishot `recv` per connection being read, on a ring
//! of the core's reader, into a ring of buffers the core provides (why: docs/ARCHITECTURE.md,
//! "Reads").
//!
//! The kernel picks a buffer for each receive, so an idle connection holds none and a
//! readable one costs neither a readiness syscall nor a `recv` syscall; the reader gives each
//! buffer back as soon as it has decoded what was in it (an incomplete frame's tail is copied
//! into the connection, as on epoll). A receive stays armed across completions until the
//! kernel ends it: at end of stream or an error, when every buffer is taken (`ENOBUFS`: the
//! reader gives buffers back and arms it again) or when the reader cancels it (a paused
//! publisher, a connection done reading). Each connection has at most one receive in the
//! kernel, identified by its reader key; its last completion (no `IORING_CQE_F_MORE`) says it
//! is gone, and only then may the key be reused.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{cqueue, opcode, types};

use crate::backend::CoreRing;
use crate::output::ConnectionKey;

/// Submission queue entries: arms and cancels of one turn beyond it take several submits.
const SUBMISSION_ENTRIES: u32 = 1024;
/// Completion queue entries: each completion but a receive's last holds a buffer, so a few
/// times the buffers is more than one turn needs. (Beyond it the kernel keeps completions on
/// its overflow list; none is lost.)
const COMPLETION_ENTRIES: u32 = 4 * BUFFER_COUNT as u32;
/// Buffers the core provides (a power of two, at most 32768): 2 MiB a core, touched only as
/// far as bytes arrive faster than the reader takes them.
const BUFFER_COUNT: u16 = 512;
/// Size of one buffer: the most one completion delivers. A bigger frame arrives over several
/// and is put together in its connection's tail, as on epoll.
const BUFFER_SIZE: usize = 4096;
/// The buffer group of the reader's buffers (the ring has only this one).
const BUFFER_GROUP: u16 = 0;
/// User data of a cancel request: its own completion says nothing the reader needs.
const CANCEL: u64 = u64::MAX;
/// Alignment the kernel requires of a buffer ring's entries.
const PAGE: usize = 4096;

/// One completion of a connection's receive.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Whose receive it is.
    pub key: ConnectionKey,
    /// Bytes received (> 0), 0 at end of stream, or `-errno`.
    pub result: i32,
    /// The buffer holding the bytes, to be given back.
    pub buffer: Option<u16>,
    /// The receive is still armed (`IORING_CQE_F_MORE`); false on its last completion.
    pub more: bool,
}

/// The core's ring of receive buffers, registered with the reader's ring.
struct ProvidedBuffers {
    /// How many (a power of two).
    count: u16,
    /// The ring's entries (page-aligned), shared with the kernel: it takes from the head, the
    /// reader gives back at the tail.
    entries: NonNull<BufRingEntry>,
    /// `count` buffers of BUFFER_SIZE bytes.
    memory: NonNull<u8>,
    /// The tail as the reader has written it (published to the kernel by `publish`).
    tail: u16,
}

impl ProvidedBuffers {
    /// The layout of `count` entries.
    fn entries_layout(count: u16) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            PAGE,
        )
        .expect("at most 32768 entries")
    }

    /// The layout of `count` buffers.
    fn memory_layout(count: u16) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(usize::from(count) * BUFFER_SIZE, PAGE)
            .expect("at most 32768 buffers")
    }

    /// Allocates `count` (a power of two) entries and buffers (zeroed pages: no RSS until the
    /// kernel writes) and gives every buffer to the ring (published once registered).
    fn new(count: u16) -> io::Result<Self> {
        assert!(
            count.is_power_of_two(),
            "a buffer ring's size is a power of two"
        );
        // SAFETY: both layouts have a nonzero size; null results are checked.
        let (entries, memory) = unsafe {
            (
                std::alloc::alloc_zeroed(Self::entries_layout(count)),
                std::alloc::alloc_zeroed(Self::memory_layout(count)),
            )
        };
        let (Some(entries), Some(memory)) = (
            NonNull::new(entries.cast::<BufRingEntry>()),
            NonNull::new(memory),
        ) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let mut buffers = ProvidedBuffers {
            count,
            entries,
            memory,
            tail: 0,
        };
        for buffer in 0..count {
            buffers.give_back(buffer);
        }
        Ok(buffers)
    }

    /// Puts `buffer` at the ring's tail (the kernel sees it after `publish`).
    fn give_back(&mut self, buffer: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot` < count; the kernel reads only entries between its head and
        // the published tail, and this one is past the published tail.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        entry.set_addr(self.memory.as_ptr() as u64 + u64::from(buffer) * BUFFER_SIZE as u64);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(buffer);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given back visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field lies in the first entry, which lives as long as `self`; the
        // kernel reads it with acquire semantics.
        let tail = unsafe { &*BufRingEntry::tail(self.entries.as_ptr()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of `buffer`.
    ///
    /// # Safety
    /// The kernel filled `buffer` and it was not given back since: nothing else uses it.
    unsafe fn bytes(&mut self, buffer: u16, len: usize) -> &mut [u8] {
        let buffer = usize::from(buffer % self.count);
        // SAFETY: in bounds (buffer < count, len clamped to BUFFER_SIZE); the caller
        // promises exclusive use.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.memory.as_ptr().add(buffer * BUFFER_SIZE),
                len.min(BUFFER_SIZE),
            )
        }
    }
}

/// The reader's ring and its buffers.
pub struct RecvRing {
    /// The ring.
    ring: CoreRing,
    /// The buffers the kernel receives into.
    buffers: RefCell<ProvidedBuffers>,
    /// Receives in the kernel: while any is, the buffers may still be written into.
    armed: Cell<usize>,
    /// Completions of the turn being processed, kept allocated between turns.
    reaped: RefCell<Vec<Received>>,
}

impl std::fmt::Debug for RecvRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvRing")
            .field("armed", &self.armed.get())
            .finish_non_exhaustive()
    }
}

impl RecvRing {
    /// Sets up the ring and registers its buffers; must run inside the core's runtime.
    pub fn new() -> io::Result<Self> {
        Self::with_buffers(BUFFER_COUNT)
    }

    /// [`RecvRing::new`] with `count` buffers (a power of two).
    fn with_buffers(count: u16) -> io::Result<Self> {
        let ring = CoreRing::new(SUBMISSION_ENTRIES, COMPLETION_ENTRIES)?;
        let buffers = ProvidedBuffers::new(count)?;
        // SAFETY: the entries stay allocated, and the same, for the ring's life (`drop`).
        unsafe {
            ring.borrow_mut().submitter().register_buf_ring(
                buffers.entries.as_ptr() as u64,
                count,
                BUFFER_GROUP,
            )?;
        }
        buffers.publish();
        Ok(RecvRing {
            ring,
            buffers: RefCell::new(buffers),
            armed: Cell::new(0),
            reaped: RefCell::new(Vec::new()),
        })
    }

    /// Arms a multishot receive of `fd` for the connection `key` (submitted by `submit`).
    pub fn arm(&self, fd: RawFd, key: ConnectionKey) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(types::Fd(fd), BUFFER_GROUP)
            .build()
            .user_data(u64::from(key.0));
        // SAFETY: the receive points only to the registered buffers, which live as long as
        // the ring; the caller keeps `fd` open until the receive's last completion.
        unsafe { self.ring.push(&entry) }?;
        self.armed.set(self.armed.get() + 1);
        Ok(())
    }

    /// Asks the kernel to end the receive of `key` (its last completion follows).
    pub fn cancel(&self, key: ConnectionKey) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(u64::from(key.0))
            .build()
            .user_data(CANCEL);
        // SAFETY: a cancel points to nothing.
        unsafe { self.ring.push(&entry) }
    }

    /// Hands the arms and cancels queued since the last call to the kernel.
    pub fn submit(&self) -> io::Result<()> {
        self.ring.borrow_mut().submit().map(drop)
    }

    /// Takes every completion posted so far (the caller gives each buffer back, then
    /// returns the list with `done`).
    pub fn reap(&self) -> Vec<Received> {
        let mut reaped = self.reaped.take();
        let mut ring = self.ring.borrow_mut();
        for cqe in ring.completion() {
            if cqe.user_data() == CANCEL {
                continue;
            }
            let more = cqueue::more(cqe.flags());
            if !more {
                self.armed.set(self.armed.get().saturating_sub(1));
            }
            reaped.push(Received {
                key: ConnectionKey(cqe.user_data() as u32),
                result: cqe.result(),
                buffer: cqueue::buffer_select(cqe.flags()),
                more,
            });
        }
        reaped
    }

    /// Gives back the list `reap` returned, and publishes the buffers given back.
    pub fn done(&self, mut reaped: Vec<Received>) {
        reaped.clear();
        *self.reaped.borrow_mut() = reaped;
        self.buffers.borrow().publish();
    }

    /// Runs `use_bytes` on the bytes a completion delivered into `buffer`, then gives the
    /// buffer back.
    pub fn with_bytes<T>(
        &self,
        buffer: u16,
        len: usize,
        use_bytes: impl FnOnce(&mut [u8]) -> T,
    ) -> T {
        let mut buffers = self.buffers.borrow_mut();
        // SAFETY: a completion handed `buffer` to the reader, and it is given back only below.
        let result = use_bytes(unsafe { buffers.bytes(buffer, len) });
        buffers.give_back(buffer);
        result
    }

    /// Gives back a buffer whose bytes are not wanted (a connection already done reading).
    pub fn discard(&self, buffer: u16) {
        self.buffers.borrow_mut().give_back(buffer);
    }

    /// Waits until completions were posted.
    pub async fn signalled(&self) -> io::Result<()> {
        self.ring.signalled().await
    }
}

impl Drop for RecvRing {
    fn drop(&mut self) {
        // A receive still in the kernel (the core is ending with connections open) may yet
        // write into a buffer: then they are left allocated for the process's last moments
        // rather than freed under it.
        let unregistered = self
            .ring
            .borrow_mut()
            .submitter()
            .unregister_buf_ring(BUFFER_GROUP);
        if self.armed.get() > 0 || unregistered.is_err() {
            return;
        }
        let buffers = self.buffers.get_mut();
        // SAFETY: allocated in `ProvidedBuffers::new` with these layouts; the kernel no longer
        // knows them and nothing else points into them.
        unsafe {
            std::alloc::dealloc(
                buffers.entries.as_ptr().cast(),
                ProvidedBuffers::entries_layout(buffers.count),
            );
            std::alloc::dealloc(
                buffers.memory.as_ptr(),
                ProvidedBuffers::memory_layout(buffers.count),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    /// Runs `test` inside a runtime with a reactor (the ring's eventfd registers with it).
    fn in_runtime(test: impl FnOnce()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let _inside = runtime.enter();
        test();
    }

    /// Reaps until `want` completions of `key` arrived (the kernel posts them at the thread's
    /// next kernel entry, which `submit` makes), handing each's bytes to `bytes`.
    fn take(ring: &RecvRing, want: usize, mut bytes: impl FnMut(&[u8])) -> Vec<Received> {
        let mut taken = Vec::new();
        for _ in 0..1000 {
            ring.submit().expect("submit");
            let reaped = ring.reap();
            for completion in &reaped {
                if let (Some(buffer), Ok(len)) =
                    (completion.buffer, usize::try_from(completion.result))
                {
                    ring.with_bytes(buffer, len, |data| bytes(data));
                }
                taken.push(*completion);
            }
            ring.done(reaped);
            if taken.len() >= want {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        taken
    }

    /// With every buffer taken the kernel ends the receive with ENOBUFS (no F_MORE); once the
    /// buffers are back, a receive armed again gets the rest, in order, and nothing is lost.
    #[test]
    fn a_receive_ended_by_enobufs_gets_the_rest_once_armed_again() {
        in_runtime(|| {
            let ring = RecvRing::with_buffers(2).expect("io_uring (this host runs it)");
            let (mut client, server) = UnixStream::pair().expect("socketpair");
            let sent: Vec<u8> = (0..5 * BUFFER_SIZE).map(|i| (i % 251) as u8).collect();
            client.write_all(&sent).expect("write");
            let key = ConnectionKey(7);
            let mut got = Vec::new();
            ring.arm(server.as_raw_fd(), key).expect("arm");
            let first = take(&ring, 3, |data| got.extend_from_slice(data));
            assert_eq!(
                first.len(),
                3,
                "two buffers' worth, then the end: {first:?}"
            );
            assert!(first[..2].iter().all(|c| c.more && c.key == key));
            assert_eq!(first[2].result, -libc::ENOBUFS);
            assert!(!first[2].more, "ENOBUFS ends the multishot receive");
            assert_eq!(got.len(), 2 * BUFFER_SIZE);
            // Given back by `with_bytes` and published by `done`: arm again.
            while got.len() < sent.len() {
                ring.arm(server.as_raw_fd(), key).expect("arm again");
                take(&ring, 1, |data| got.extend_from_slice(data));
            }
            assert_eq!(got, sent, "every byte, in order");
        });
    }

    /// A cancelled receive's last completion says so, and the key is free after it.
    #[test]
    fn a_cancelled_receive_ends_with_ecanceled() {
        in_runtime(|| {
            let ring = RecvRing::with_buffers(4).expect("io_uring (this host runs it)");
            let (_client, server) = UnixStream::pair().expect("socketpair");
            let key = ConnectionKey(3);
            ring.arm(server.as_raw_fd(), key).expect("arm");
            ring.submit().expect("submit");
            ring.cancel(key).expect("cancel");
            let taken = take(&ring, 1, |_| {});
            assert_eq!(taken.len(), 1);
            assert_eq!(taken[0].result, -libc::ECANCELED);
            assert!(!taken[0].more);
            assert_eq!(ring.armed.get(), 0);
        });
    }

    /// End of stream is a completion of 0 bytes without a buffer, and the receive's last.
    #[test]
    fn end_of_stream_ends_the_receive() {
        in_runtime(|| {
            let ring = RecvRing::with_buffers(4).expect("io_uring (this host runs it)");
            let (mut client, server) = UnixStream::pair().expect("socketpair");
            let key = ConnectionKey(1);
            ring.arm(server.as_raw_fd(), key).expect("arm");
            client.write_all(b"last words").expect("write");
            drop(client);
            let mut got = Vec::new();
            let taken = take(&ring, 2, |data| got.extend_from_slice(data));
            assert_eq!(got, b"last words");
            let last = taken.last().expect("completions");
            assert_eq!((last.result, last.buffer, last.more), (0, None, false));
        });
    }
}

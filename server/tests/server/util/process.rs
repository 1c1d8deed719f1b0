//! The real `ringcast` binary as a child process: start it on an OS-picked port and learn the
//! address from its start log line, wait for its exit with a bound, collect its stderr.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use super::WAIT;

/// A `Command` for the server binary with colourless, info-level logs.
pub fn ringcast_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringcast"));
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A running server binary.
pub struct ServerProcess {
    /// The child; killed on drop if still running.
    pub child: Child,
    /// The address from the start log line.
    pub addr: SocketAddr,
    /// Every stderr line, as the reader thread receives them.
    stderr_lines: mpsc::Receiver<String>,
    /// The stderr lines read so far (the start line included).
    pub stderr: Vec<String>,
}

/// Starts the binary with `args` and waits for the log line naming the bound address; over TLS
/// when `RINGCAST_TEST_TLS=1` (see [`super::tls`]).
pub fn spawn_server(args: &[&str]) -> ServerProcess {
    let mut command = ringcast_command(args);
    if !args.contains(&"--tls-cert") {
        command.args(super::tls::server_args());
    }
    spawn_server_command(command)
}

/// Starts `command` (from [`ringcast_command`]) and waits for the log line naming the bound
/// address.
pub fn spawn_server_command(mut command: Command) -> ServerProcess {
    let mut child = command.spawn().expect("spawn ringcast");
    let stderr = child.stderr.take().expect("piped stderr");
    let (sender, stderr_lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(strip_ansi(&line)).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let addr = loop {
        match stderr_lines.recv_timeout(WAIT) {
            Ok(line) => {
                let addr = listening_addr(&line);
                seen.push(line);
                if let Some(addr) = addr {
                    break addr;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("no `listening addr=` log line; stderr so far: {seen:#?}");
            }
        }
    };
    ServerProcess {
        child,
        addr,
        stderr_lines,
        stderr: seen,
    }
}

/// The `addr=IP:PORT` value of a log line, if it is the start line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let value = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("addr="))?;
    value.trim_matches(|c| c == '"' || c == ',').parse().ok()
}

/// Removes ANSI colour sequences (in case the logger colours despite NO_COLOR).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl ServerProcess {
    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Waits (bounded) for the next stderr line containing `needle` and returns it (the lines
    /// read meanwhile are kept in `stderr`).
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        loop {
            match self.stderr_lines.recv_timeout(WAIT) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stderr line containing {needle:?}; stderr so far: {:#?}",
                    self.stderr
                ),
            }
        }
    }

    /// Waits (bounded) for the exit; returns the status and all stderr lines.
    pub fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let status = wait_bounded(&mut self.child);
        // The reader thread ends at EOF, which follows the exit.
        self.stderr.extend(self.stderr_lines.iter());
        (status, std::mem::take(&mut self.stderr))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit, killing it and failing after `WAIT`.
pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringcast did not exit within {WAIT:?}");
        }
        thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs `command` to its exit (bounded) and returns the status and its stderr.
pub fn run_to_exit(mut command: Command) -> (ExitStatus, String) {
    let mut child = command.spawn().expect("spawn ringcast");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status = wait_bounded(&mut child);
    let text = reader.join().expect("stderr reader");
    (status, strip_ansi(&text))
}

/// Resident set of process `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

//! The binary's start-up: bad option values are refused with a message naming the flag; where
//! io_uring is blocked (by seccomp, as Docker's default profile does) the default `--io auto`
//! runs on epoll and says why, and `--io uring` fails with a clear message and exit 2 instead of
//! a panic or a bare errno.

use crate::util::process::{ringcast_command, run_to_exit};

#[test]
fn bad_option_values_are_refused_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--listen", "not-an-address"], "--listen"),
        (&["--cores", "0"], "--cores"),
        (&["--cores", "many"], "--cores"),
        (&["--max-message", "0"], "--max-message"),
        (&["--max-message", "lots"], "--max-message"),
        (&["--max-backlog", "12parsecs"], "--max-backlog"),
        (
            &["--max-message", "1MiB", "--max-backlog", "1MiB"],
            "--max-backlog",
        ),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--ping-interval", "soon"], "--ping-interval"),
        (&["--idle-timeout", "0s"], "--idle-timeout"),
    ];
    for (args, flag) in cases {
        // Loopback and an OS-picked port unless the case is about --listen (a repeated flag
        // would be refused for the wrong reason).
        let mut all = if args.contains(&"--listen") {
            vec![]
        } else {
            vec!["--listen", "127.0.0.1:0"]
        };
        all.extend_from_slice(args);
        let (status, stderr) = run_to_exit(ringcast_command(&all));
        assert!(!status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(flag),
            "{args:?}: message does not name {flag}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: panic: {stderr}");
    }
}

/// Every duration option: a deadline is "now + the option", which panicked past what
/// `Instant` holds (`--shutdown-grace 10000000000000000000s` took a core down at SIGTERM).
const DURATION_FLAGS: [&str; 6] = [
    "--write-timeout",
    "--publish-timeout",
    "--ping-interval",
    "--idle-timeout",
    "--shutdown-grace",
    "--header-timeout",
];

#[test]
fn durations_over_the_maximum_are_refused_with_exit_2() {
    for flag in DURATION_FLAGS {
        // Just past the documented maximum (24h), and the value that overflowed `Instant`.
        for value in ["24h 1s", "10000000000000000000s"] {
            let (status, stderr) =
                run_to_exit(ringcast_command(&["--listen", "127.0.0.1:0", flag, value]));
            assert_eq!(
                status.code(),
                Some(2),
                "{flag} {value}: not refused with exit 2: {stderr}"
            );
            assert!(
                stderr.contains(flag) && stderr.contains("24h"),
                "{flag} {value}: message does not name the flag and the maximum: {stderr}"
            );
            assert!(
                !stderr.contains("panicked"),
                "{flag} {value}: panic: {stderr}"
            );
        }
    }
}

#[test]
fn audience_or_issuer_without_a_jwt_key_is_refused() {
    for flag in ["--jwt-audience", "--jwt-issuer"] {
        let (status, stderr) =
            run_to_exit(ringcast_command(&["--listen", "127.0.0.1:0", flag, "x"]));
        assert_eq!(
            status.code(),
            Some(2),
            "{flag} alone was not refused: {stderr}"
        );
        assert!(
            stderr.contains(flag) && stderr.contains("needs --jwt-secret or --jwt-public-key"),
            "{flag}: message does not say what is missing: {stderr}"
        );
    }
}

#[test]
fn env_variable_values_are_validated_too() {
    let mut command = ringcast_command(&["--listen", "127.0.0.1:0"]);
    command.env("RINGCAST_CORES", "0");
    let (status, stderr) = run_to_exit(command);
    assert!(!status.success(), "RINGCAST_CORES=0 was accepted");
    assert!(
        stderr.contains("cores"),
        "message does not name the option: {stderr}"
    );
}

#[test]
fn help_documents_every_option() {
    let mut command = ringcast_command(&["--help"]);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let output = command.output().expect("run ringcast --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--cores",
        "--max-message",
        "--max-backlog",
        "--max-connections",
        "--ping-interval",
        "--idle-timeout",
        "--shutdown-grace",
        "--allowed-origin",
        "--header-timeout",
        "--jwt-audience",
        "--jwt-issuer",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
    assert!(
        help.contains("at most 24h"),
        "--help does not give the durations' maximum"
    );
    // FRAME_HANDLE_BYTES: the handle a queued frame is charged with is 8 bytes.
    assert!(
        help.contains("8-byte handle") && !help.contains("32-byte"),
        "--help gives the wrong handle size"
    );
}

/// `ringcast_command(args)` in a child where io_uring_setup fails with EPERM.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn without_io_uring(args: &[&str]) -> std::process::Command {
    use std::os::unix::process::CommandExt;

    let mut command = ringcast_command(args);
    // The suite may run with RINGCAST_IO set (the epoll pass of .ci/run): these tests choose.
    command.env_remove("RINGCAST_IO");
    // SAFETY: the closure runs in the forked child before exec and only makes two syscalls
    // (prctl, seccomp) on data that lives in the closure; no allocation, no locks.
    unsafe {
        command.pre_exec(seccomp::deny_io_uring_setup);
    }
    command
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn io_uring_required_but_blocked_gives_a_clear_error_and_exit_2() {
    let command = without_io_uring(&["--listen", "127.0.0.1:0", "--cores", "1", "--io", "uring"]);
    let (status, stderr) = run_to_exit(command);
    assert_eq!(
        status.code(),
        Some(2),
        "--io uring started (or failed differently) without io_uring: {stderr}"
    );
    assert!(
        stderr.contains("io_uring is unavailable") && stderr.contains("--io epoll"),
        "message does not say io_uring is missing and what to do: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "panic instead of a message: {stderr}"
    );
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[tokio::test]
async fn blocked_io_uring_falls_back_to_epoll_and_broadcasts() {
    use crate::util::process::spawn_server_command;
    use crate::util::ws;

    let mut command = without_io_uring(&["--listen", "127.0.0.1:0", "--cores", "2"]);
    // Over TLS with RINGCAST_TEST_TLS=1, as the clients below.
    command.args(crate::util::tls::server_args());
    let server = spawn_server_command(command);
    let log = server.stderr.join("\n");
    assert!(
        log.contains("running on the epoll backend") && log.contains("io=epoll"),
        "no log line saying the server fell back to epoll: {log}"
    );
    let mut alice = ws::connect(server.addr, "/ws/sandboxed").await;
    let mut bob = ws::connect(server.addr, "/ws/sandboxed").await;
    let mut other = ws::connect(server.addr, "/ws/elsewhere").await;
    ws::send_text(&mut alice, "through epoll").await;
    assert_eq!(ws::next_text(&mut alice).await, "through epoll");
    assert_eq!(ws::next_text(&mut bob).await, "through epoll");
    ws::send_text(&mut other, "own room").await;
    assert_eq!(ws::next_text(&mut other).await, "own room");
}

/// A seccomp filter that makes `io_uring_setup` fail with EPERM (what Docker's default profile
/// does) and allows everything else.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod seccomp {
    /// `AUDIT_ARCH_*` of this target (linux/audit.h): the filter must check the architecture
    /// before trusting the syscall number.
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;

    /// Offsets in `struct seccomp_data`: `nr` (int) then `arch` (u32).
    const OFFSET_NR: u32 = 0;
    const OFFSET_ARCH: u32 = 4;

    const fn stmt(code: u16, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }

    /// Installs the filter in the calling process (meant for `pre_exec`).
    pub fn deny_io_uring_setup() -> std::io::Result<()> {
        const LOAD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
        const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
        const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
        let io_uring_setup = libc::SYS_io_uring_setup as u32;
        let filter = [
            stmt(LOAD, OFFSET_ARCH),
            jump(JEQ, AUDIT_ARCH, 1, 0),
            stmt(RET, libc::SECCOMP_RET_ALLOW),
            stmt(LOAD, OFFSET_NR),
            jump(JEQ, io_uring_setup, 0, 1),
            stmt(RET, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
            stmt(RET, libc::SECCOMP_RET_ALLOW),
        ];
        let program = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integers only; seccomp reads `program`,
        // which points at `filter`, both alive for the duration of the call.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags: libc::c_ulong = 0;
            if libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &program,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

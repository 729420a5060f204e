//! The real `embargo serve` binary on a loopback port, stopped by PID when
//! its guard drops (also when a test fails), with its log kept for checks.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::{Logs, Site};

/// A running `embargo serve -c SITE/embargo.toml`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Everything the server wrote to stderr so far.
    pub logs: Logs,
}

impl Server {
    /// Starts the server for `site` (its config gets `listen` on port 0).
    pub fn start(site: &Site) -> Server {
        Server::start_with_env(site, &[])
    }

    /// Starts the server with extra environment variables (e.g. log format).
    pub fn start_with_env(site: &Site, env: &[(&str, &str)]) -> Server {
        let mut cmd = site.embargo();
        for (k, v) in env {
            cmd.env(k, v);
        }
        Server::spawn(cmd, site)
    }

    /// Starts the server under a wrapper command that execs it (so the PID
    /// stays the server's), e.g. `prlimit --nofile=300:300`.
    pub fn start_wrapped(site: &Site, wrapper: &[&str]) -> Server {
        let mut cmd = std::process::Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(crate::common::embargo_bin())
            .env_remove("EMBARGO_CONFIG")
            .env("EMBARGO_LOG", "info")
            .stdin(Stdio::null())
            .current_dir(site.path())
            .env("TMPDIR", site.tmp_dir());
        Server::spawn(cmd, site)
    }

    fn spawn(mut cmd: std::process::Command, site: &Site) -> Server {
        let mut child = cmd
            .args(["serve", "-c"])
            .arg(site.config_path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("embargo serve starts");
        let logs = Logs::capture(child.stderr.take().unwrap());
        let mut server = Server {
            child,
            base: String::new(),
            addr: String::new(),
            logs,
        };
        let addr = server.bound_address("web intake listening on http://");
        server.base = format!("http://{addr}");
        server.addr = addr;
        server
    }

    /// The `ADDR` of the log line `... PREFIX ADDR/...`, waiting for it;
    /// panics with the log if the server exits or never prints it.
    pub fn bound_address(&mut self, prefix: &str) -> String {
        let logs = self.logs.clone();
        let child = &mut self.child;
        crate::common::wait_until_with(
            &format!("embargo serve to print {prefix:?}"),
            Duration::from_secs(60),
            || logs.line_with(prefix).is_some() || matches!(child.try_wait(), Ok(Some(_))),
            || format!("its log:\n{}", logs.text()),
        );
        let line = logs.line_with(prefix).unwrap_or_else(|| {
            logs.wait_ended(Duration::from_secs(5));
            panic!("embargo serve exited; its log:\n{}", logs.text())
        });
        let rest = line.split(prefix).nth(1).unwrap_or_default();
        rest.split('/')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "HUP", "TERM") to the server process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit status, or `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let status = crate::common::wait_exit(&mut self.child, timeout);
        if status.is_some() {
            self.logs.wait_ended(timeout);
        }
        status
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// How many file descriptors the server holds open: each accepted
    /// connection is one, so tests can wait for connections to be taken
    /// in or let go.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|fds| fds.count())
            .unwrap_or(0)
    }

    /// The peak resident set size of the server (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reqwest client that never uses a proxy (all traffic stays on loopback).
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Sends raw bytes as an HTTP request and returns (status, headers+body).
/// With `close_write`, the write half is shut after sending, so the server
/// sees the body end early.
pub fn raw_http(addr: &str, request: &[u8], close_write: bool) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // The server may answer and close before reading everything.
    let _ = stream.write_all(request);
    if close_write {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = status_of(&text);
    (status, text)
}

/// The status code of a raw HTTP answer (0 when there is none).
pub fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A multipart/form-data body built by hand, for hostile variants.
pub struct RawMultipart {
    pub boundary: String,
    pub body: Vec<u8>,
}

impl RawMultipart {
    pub fn new() -> RawMultipart {
        RawMultipart {
            boundary: "----embargotestboundary7MA4YWxkTrZu0gW".into(),
            body: Vec::new(),
        }
    }

    pub fn text(mut self, name: &str, value: &[u8]) -> RawMultipart {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(value);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// A file part with `filename` written as given (raw bytes).
    pub fn file(mut self, filename: &[u8], content: &[u8]) -> RawMultipart {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(filename);
        self.body
            .extend_from_slice(b"\"\r\nContent-Type: application/octet-stream\r\n\r\n");
        self.body.extend_from_slice(content);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn raw(mut self, bytes: &[u8]) -> RawMultipart {
        self.body.extend_from_slice(bytes);
        self
    }

    pub fn end(mut self) -> RawMultipart {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        self
    }

    /// The full HTTP request to `path` with a correct Content-Length.
    pub fn request(&self, addr: &str, path: &str) -> Vec<u8> {
        let mut out = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary={}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.boundary,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

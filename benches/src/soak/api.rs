//! `Api`: a minimal HTTP/1.1 client for the server's API (`Authorization: apikey`), `/metrics` and the like:
//! one keep-alive connection, one request at a time, bodies sized by `Content-Length`.

use std::net::SocketAddr;
use std::time::Duration;

use memchr::memmem;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long one request may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the server's HTTP endpoints.
#[derive(Debug)]
pub(crate) struct Api {
    addr: SocketAddr,
    key: String,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

/// An answer: status and body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Api {
    /// A client of the server at `addr` that sends `key` with every request.
    pub(crate) fn new(addr: SocketAddr, key: &str) -> Self {
        Self { addr, key: key.to_owned(), conn: None, buf: Vec::new() }
    }

    /// Closes the connection (the next request opens another).
    pub(crate) fn disconnect(&mut self) {
        self.conn = None;
    }

    /// `GET path`, expecting 200 and a JSON body.
    pub(crate) async fn get_json(&mut self, path: &str) -> Result<Value, String> {
        json(path, &self.request("GET", path, None).await?)
    }

    /// `POST path` with a JSON body, expecting 200 and a JSON body.
    pub(crate) async fn post_json(&mut self, path: &str, body: &[u8]) -> Result<Value, String> {
        json(path, &self.request("POST", path, Some(body)).await?)
    }

    /// `GET path`, expecting 200 and a text body.
    pub(crate) async fn get_text(&mut self, path: &str) -> Result<String, String> {
        let answer = self.request("GET", path, None).await?;
        if answer.status != 200 {
            return Err(format!("GET {path}: status {}", answer.status));
        }
        String::from_utf8(answer.body).map_err(|_| format!("GET {path}: the body is not UTF-8"))
    }

    /// Sends one request and reads its answer; the connection is dropped after any failure.
    ///
    /// A kept-alive connection the server closed while it was idle (after its header read timeout) fails
    /// before any byte of an answer: then the request is sent once more on a fresh connection. The server
    /// never handles a request on a connection it closed as idle, so this never makes one twice.
    pub(crate) async fn request(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer, String> {
        let reused = self.conn.is_some();
        let mut result = self.attempt(method, path, body).await;
        if result.is_err() && reused && self.buf.is_empty() {
            result = self.attempt(method, path, body).await;
        }
        result.map_err(|e| format!("{method} {path}: {e}"))
    }

    async fn attempt(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer, String> {
        let exchange = self.exchange(method, path, body);
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn exchange(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer, String> {
        let stream = match &mut self.conn {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                self.buf.clear();
                self.conn.insert(stream)
            }
        };
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: apikey {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            self.addr,
            self.key,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request).await.map_err(|e| format!("write: {e}"))?;
        let head_end = loop {
            if let Some(at) = memmem::find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            fill(stream, &mut self.buf).await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse()))
            .ok_or("no content-length")?
            .map_err(|_| "a bad content-length")?;
        while self.buf.len() < head_end + length {
            fill(stream, &mut self.buf).await?;
        }
        let body = self.buf[head_end..head_end + length].to_vec();
        self.buf.drain(..head_end + length);
        if head.to_ascii_lowercase().contains("connection: close") {
            self.conn = None;
        }
        Ok(Answer { status, body })
    }
}

/// Reads more of the answer into `buf`.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) => Err("the server closed the connection".to_owned()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

fn json(path: &str, answer: &Answer) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(&answer.body)
        .map_err(|_| format!("{path}: the body is not JSON: {}", String::from_utf8_lossy(&answer.body)))?;
    if answer.status != 200 {
        return Err(format!("{path}: status {}: {value}", answer.status));
    }
    Ok(value)
}

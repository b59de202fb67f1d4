//! The load generator's WebSocket client: a TCP connection from a chosen loopback source address, a hand-written
//! upgrade handshake, and a read buffer parsed in place, with pings answered on the way.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use memchr::memmem;
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::marker;
use crate::wire::{self, WireError};

/// Source addresses in 127.0.0.0/8, handed out in turn, so that tens of thousands of connections to one server
/// port do not run out of ephemeral ports (about 28,000 per source address).
#[derive(Debug)]
pub(crate) struct Sources {
    count: u32,
    next: Cell<u32>,
}

impl Sources {
    /// `count` addresses from 127.0.0.2 on (at most 250).
    pub(crate) fn new(count: u32) -> Self {
        Self { count: count.clamp(1, 250), next: Cell::new(0) }
    }

    /// The next source address.
    pub(crate) fn next(&self) -> Ipv4Addr {
        let i = self.next.get();
        self.next.set((i + 1) % self.count);
        Ipv4Addr::new(127, 0, 0, 2 + i as u8)
    }
}

/// Why a client connection failed.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// A socket error.
    Io(io::Error),
    /// The server did not answer the upgrade with 101; holds the status line.
    Handshake(String),
    /// The server broke the protocol or sent something the scenario did not expect.
    Protocol(String),
    /// The server closed the connection, with the close code when it sent one.
    Closed(Option<u16>),
    /// Something did not happen in time.
    Timeout(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "io: {e}"),
            Self::Handshake(status) => write!(f, "handshake refused: {status}"),
            Self::Protocol(what) => write!(f, "protocol: {what}"),
            Self::Closed(Some(code)) => write!(f, "closed by the server with {code}"),
            Self::Closed(None) => f.write_str("closed by the server without a close frame"),
            Self::Timeout(what) => write!(f, "timed out waiting for {what}"),
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// A short printable excerpt of a payload, for error messages.
pub(crate) fn excerpt(payload: &[u8]) -> String {
    String::from_utf8_lossy(&payload[..payload.len().min(160)]).into_owned()
}

/// One client WebSocket connection.
#[derive(Debug)]
pub(crate) struct WsConn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Pongs (and the like) to write after the frames in the buffer are handled.
    out: Vec<u8>,
    /// Pings the server has sent.
    pub(crate) pings: u64,
    /// Bytes read from the socket, handshake included.
    pub(crate) bytes_in: u64,
    /// When the last read returned, on [`marker::now_us`]'s clock: the receipt time of the frames it brought
    /// (one clock read per read call, not per frame).
    read_us: u32,
}

const REQUEST_TAIL: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Connects from `source` to `addr`, upgrades on `path`, and returns the connection with a read buffer of
/// `buf_size` bytes (it grows for frames that do not fit).
pub(crate) async fn connect(
    addr: SocketAddr,
    source: Ipv4Addr,
    path: &str,
    buf_size: usize,
) -> Result<WsConn, ClientError> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    upgrade(socket, addr, path, buf_size).await
}

/// Like [`connect`], with the socket's receive buffer set to `recv_buffer` bytes first: a client that stops
/// reading then fills the server's side quickly (a slow consumer).
pub(crate) async fn connect_small_window(
    addr: SocketAddr,
    source: Ipv4Addr,
    path: &str,
    recv_buffer: u32,
) -> Result<WsConn, ClientError> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(recv_buffer)?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    upgrade(socket, addr, path, 4096).await
}

/// Connects `socket` to `addr` and upgrades on `path`.
async fn upgrade(socket: TcpSocket, addr: SocketAddr, path: &str, buf_size: usize) -> Result<WsConn, ClientError> {
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut conn = WsConn {
        stream,
        buf: vec![0; buf_size.max(1024)],
        start: 0,
        end: 0,
        out: Vec::new(),
        pings: 0,
        bytes_in: 0,
        read_us: 0,
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{REQUEST_TAIL}");
    conn.stream.write_all(request.as_bytes()).await?;
    let head_end = loop {
        if let Some(at) = memmem::find(&conn.buf[..conn.end], b"\r\n\r\n") {
            break at + 4;
        }
        if conn.end == conn.buf.len() {
            return Err(ClientError::Handshake("response head too long".to_owned()));
        }
        conn.fill().await?;
    };
    let head = &conn.buf[..head_end];
    if !head.starts_with(b"HTTP/1.1 101") {
        let status = head.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(ClientError::Handshake(excerpt(status)));
    }
    conn.start = head_end;
    Ok(conn)
}

impl WsConn {
    /// Reads once from the socket into the buffer.
    async fn fill(&mut self) -> Result<(), ClientError> {
        self.make_room();
        let space = self.buf.len() - self.end;
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(ClientError::Closed(None));
        }
        self.end += n;
        self.bytes_in += n as u64;
        self.read_us = marker::now_us();
        if n < space {
            // A short read emptied the socket: forget its readiness now, so that the next read waits for the
            // next epoll edge instead of first making a `read` call that fails with EAGAIN. Data that arrived
            // after this read still wakes us: its edge is queued in epoll, and tokio only clears readiness
            // that no newer event has set.
            let _ = self.stream.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
        }
        Ok(())
    }

    /// Makes room at the end of the buffer for the next read: moves the unhandled bytes to the front once the
    /// handled ones take half of it, and doubles it when it is full of one unfinished frame.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.buf.len() - self.end < self.buf.len() / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
    }

    /// Handles every complete frame in the buffer: data frames go to `on_data`, pings are answered (queued in
    /// `out`), a close frame ends the connection. Returns how many data frames there were.
    fn drain(&mut self, on_data: &mut impl FnMut(&[u8], u32)) -> Result<usize, ClientError> {
        let mut data = 0;
        while let Some(frame) = wire::parse_server_frame(&self.buf[self.start..self.end])? {
            let payload = &self.buf[self.start + frame.payload_start..self.start + frame.end];
            match frame.opcode {
                wire::OP_TEXT | wire::OP_BINARY if frame.fin => {
                    on_data(payload, self.read_us);
                    data += 1;
                }
                wire::OP_PING => {
                    wire::put_masked(&mut self.out, wire::OP_PONG, payload);
                    self.pings += 1;
                }
                wire::OP_PONG => {}
                wire::OP_CLOSE => {
                    let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Err(ClientError::Closed(code));
                }
                wire::OP_CONTINUATION | wire::OP_TEXT | wire::OP_BINARY => {
                    return Err(ClientError::Protocol("the server fragmented a message".to_owned()));
                }
                other => return Err(ClientError::Protocol(format!("opcode {other}"))),
            }
            self.start += frame.end;
        }
        Ok(data)
    }

    /// Writes the pongs that [`Self::drain`] queued.
    async fn flush_out(&mut self) -> Result<(), ClientError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Waits until at least one data frame has arrived, then hands every complete data frame in the buffer to
    /// `on_data` with its receipt time ([`marker::now_us`]) and returns how many there were. Pings are answered
    /// on the way.
    pub(crate) async fn read_data(&mut self, mut on_data: impl FnMut(&[u8], u32)) -> Result<usize, ClientError> {
        loop {
            let n = self.drain(&mut on_data)?;
            self.flush_out().await?;
            if n > 0 {
                return Ok(n);
            }
            self.fill().await?;
        }
    }

    /// Like [`Self::read_data`] but never waits: handles what the socket has now, returns 0 if nothing.
    pub(crate) async fn poll_data(&mut self, mut on_data: impl FnMut(&[u8], u32)) -> Result<usize, ClientError> {
        let mut total = self.drain(&mut on_data)?;
        // A bounded number of reads, so that a socket that never runs dry does not keep the thread; whatever is
        // left keeps the socket readable for the next call.
        for _ in 0..16 {
            // Always room to read: a full buffer that is never read would leave the socket readable forever.
            self.make_room();
            match self.stream.try_read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(ClientError::Closed(None)),
                Ok(n) => {
                    self.end += n;
                    self.bytes_in += n as u64;
                    self.read_us = marker::now_us();
                    total += self.drain(&mut on_data)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        self.flush_out().await?;
        Ok(total)
    }

    /// Waits until the socket has something to read.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.stream.readable().await
    }

    /// Writes bytes (already encoded frames).
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads data frames until `count` of them contain `needle`, skipping the hub's `welcome`; anything else is a
    /// protocol error. For setup steps such as waiting for `subscribed` replies.
    pub(crate) async fn expect(&mut self, needle: &[u8], count: usize, within: Duration) -> Result<(), ClientError> {
        let finder = memmem::Finder::new(needle);
        let mut seen = 0;
        let mut unexpected = None;
        let wait = async {
            while seen < count {
                self.read_data(|payload, _| {
                    if finder.find(payload).is_some() {
                        seen += 1;
                    } else if memmem::find(payload, b"\"type\":\"welcome\"").is_none() && unexpected.is_none() {
                        unexpected = Some(excerpt(payload));
                    }
                })
                .await?;
                if let Some(what) = unexpected.take() {
                    return Err(ClientError::Protocol(format!("unexpected frame {what}")));
                }
            }
            Ok(())
        };
        tokio::time::timeout(within, wait).await.map_err(|_| ClientError::Timeout("a setup reply"))?
    }

    /// Drops the connection with a TCP reset (`SO_LINGER` 0): no close frame, no FIN.
    pub(crate) fn reset(self) {
        // Dropping with a zero linger never blocks; failing to set it leaves an ordinary close, which is fine.
        let _ = self.stream.set_zero_linger();
    }

    /// Closes cleanly: sends a close frame with 1000, then waits (at most `within`) for the server's close frame
    /// or for it to close the TCP connection.
    pub(crate) async fn close(mut self, within: Duration) -> Result<(), ClientError> {
        let mut frame = Vec::with_capacity(8);
        wire::put_masked(&mut frame, wire::OP_CLOSE, &1000u16.to_be_bytes());
        self.stream.write_all(&frame).await?;
        let wait = async {
            loop {
                match self.read_data(|_, _| {}).await {
                    Ok(_) => {}
                    Err(ClientError::Closed(_)) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        };
        tokio::time::timeout(within, wait).await.map_err(|_| ClientError::Timeout("the server's close"))?
    }
}

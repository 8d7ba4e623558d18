//! A SPDY/3.1 connection over any Tokio byte stream: streams opened
//! (client) or accepted (server), their data multiplexed over the one
//! connection.
//!
//! Two tasks own the IO: a reader that decodes frames and routes them to
//! streams, and a writer that encodes what streams and the connection
//! queue for it. The behaviour is what Kubernetes' streaming peers
//! (moby/spdystream under `k8s.io/apimachinery`'s httpstream) expect and
//! do:
//! - a stream is usable once the peer answered its SYN_STREAM with a
//!   SYN_REPLY (spdystream drops data on a stream it has not replied to),
//!   so [`Connection::open`] waits for the reply;
//! - a side ends its half of a stream with an empty DATA frame with FIN;
//!   a RST_STREAM ends both halves;
//! - the peer's PINGs are echoed;
//! - no flow control: spdystream neither sends WINDOW_UPDATE nor honours
//!   it, so neither does this (received SETTINGS and WINDOW_UPDATE are
//!   ignored). Back-pressure comes from the socket: the reader waits
//!   while a stream's queue is full, as spdystream blocks on its
//!   unbuffered channel.
//! - GOAWAY stops new streams; the streams already open go on until the
//!   connection closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::frame::{Decoder, Encoder, Frame, FrameError, Headers, goaway, rst};

/// Chunks queued per stream before the connection's reader waits.
const DATA_QUEUE: usize = 16;
/// Frames queued for the writer.
const OUT_QUEUE: usize = 64;
/// The largest DATA frame this side sends.
const MAX_DATA_FRAME: usize = 32 * 1024;
/// How long [`Connection::open`] waits for the peer's SYN_REPLY
/// (client-go's `createStreamResponseTimeout`).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("stream reset by the peer (status {0})")]
    Reset(u32),
    #[error("connection closed")]
    Closed,
    #[error("the peer is going away (GOAWAY)")]
    GoneAway,
    #[error("timed out waiting for the stream's reply")]
    Timeout,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Opens streams with odd ids (the side that sent the upgrade).
    Client,
    /// Accepts streams and opens even ones.
    Server,
}

enum Out {
    Frame(Frame),
    /// Flush, then close the write side.
    Shutdown,
}

/// What the reader routes to an open stream.
struct Entry {
    /// `None` once the peer finished its half.
    data: Option<mpsc::Sender<Bytes>>,
    /// Answered by the peer's SYN_REPLY (streams this side opened).
    reply: Option<oneshot::Sender<Result<(), Error>>>,
}

struct State {
    streams: HashMap<u32, Entry>,
    last_received: u32,
    goaway: bool,
    closed: bool,
}

struct Shared {
    role: Role,
    out: mpsc::Sender<Out>,
    state: Mutex<State>,
    /// Serializes stream creation: ids must reach the wire in order.
    next_id: tokio::sync::Mutex<u32>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a control frame from the reader without waiting on it (the
    /// writer may be blocked on a peer that waits for us to read).
    fn send_soon(&self, frame: Frame) {
        match self.out.try_send(Out::Frame(frame)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(item)) => {
                let out = self.out.clone();
                tokio::spawn(async move {
                    let _ = out.send(item).await;
                });
            }
        }
    }

    async fn dispatch(&self, frame: Frame, incoming: Option<&mpsc::Sender<IncomingStream>>) {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                headers,
                ..
            } => {
                let from_peer = (stream_id % 2 == 1) == (self.role == Role::Server);
                let (tx, rx) = mpsc::channel(DATA_QUEUE);
                {
                    let mut st = self.state();
                    if stream_id == 0 || !from_peer || stream_id <= st.last_received {
                        drop(st);
                        self.send_soon(Frame::RstStream {
                            stream_id,
                            status: rst::PROTOCOL_ERROR,
                        });
                        return;
                    }
                    st.last_received = stream_id;
                    if incoming.is_none() || st.goaway {
                        drop(st);
                        self.send_soon(Frame::RstStream {
                            stream_id,
                            status: rst::REFUSED_STREAM,
                        });
                        return;
                    }
                    st.streams.insert(
                        stream_id,
                        Entry {
                            data: (!fin).then_some(tx),
                            reply: None,
                        },
                    );
                }
                let stream = IncomingStream {
                    id: stream_id,
                    headers,
                    rx,
                    out: self.out.clone(),
                };
                if let Some(incoming) = incoming
                    && incoming.send(stream).await.is_err()
                {
                    self.state().streams.remove(&stream_id);
                    self.send_soon(Frame::RstStream {
                        stream_id,
                        status: rst::REFUSED_STREAM,
                    });
                }
            }
            Frame::SynReply { stream_id, fin, .. } => {
                let mut st = self.state();
                if let Some(e) = st.streams.get_mut(&stream_id) {
                    if let Some(reply) = e.reply.take() {
                        let _ = reply.send(Ok(()));
                    }
                    if fin {
                        st.streams.remove(&stream_id);
                    }
                }
            }
            Frame::Data { stream_id, fin, data } => {
                let tx = self.state().streams.get(&stream_id).and_then(|e| e.data.clone());
                if let Some(tx) = tx
                    && !data.is_empty()
                {
                    // A reader that went away just loses the data.
                    let _ = tx.send(data).await;
                }
                if fin {
                    let mut st = self.state();
                    if let Some(e) = st.streams.get_mut(&stream_id) {
                        e.data = None;
                        if e.reply.is_none() {
                            st.streams.remove(&stream_id);
                        }
                    }
                }
            }
            Frame::RstStream { stream_id, status } => {
                if let Some(e) = self.state().streams.remove(&stream_id)
                    && let Some(reply) = e.reply
                {
                    let _ = reply.send(Err(Error::Reset(status)));
                }
            }
            Frame::Ping { id } => {
                // Ours are odd from a client, even from a server.
                let ours = (id % 2 == 1) == (self.role == Role::Client);
                if !ours {
                    self.send_soon(Frame::Ping { id });
                }
            }
            Frame::GoAway { .. } => {
                let mut st = self.state();
                st.goaway = true;
                for (_, e) in st.streams.iter_mut() {
                    if let Some(reply) = e.reply.take() {
                        let _ = reply.send(Err(Error::GoneAway));
                    }
                }
            }
            Frame::Headers { .. } | Frame::Settings { .. } | Frame::WindowUpdate { .. } => {}
        }
    }
}

/// One SPDY connection. Dropping it ends it: reading stops (every
/// stream's data ends) and the write side closes once what is queued is
/// written.
pub struct Connection {
    shared: Arc<Shared>,
    incoming: Option<mpsc::Receiver<IncomingStream>>,
    closed: watch::Receiver<bool>,
    /// Dropped with the connection: stops the reader.
    _stop: oneshot::Sender<()>,
}

impl Connection {
    /// Starts a connection over `io` (an upgraded HTTP connection).
    pub fn new<T>(io: T, role: Role) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::start(io, role, None)
    }

    /// As [`Connection::new`], also sending a PING every `period` (as
    /// client-go's round tripper does to keep proxies from timing out an
    /// idle connection).
    pub fn with_pings<T>(io: T, role: Role, period: Duration) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::start(io, role, Some(period))
    }

    fn start<T>(io: T, role: Role, ping_period: Option<Duration>) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let first_id = match role {
            Role::Client => 1,
            Role::Server => 2,
        };
        let shared = Arc::new(Shared {
            role,
            out: out_tx,
            state: Mutex::new(State {
                streams: HashMap::new(),
                last_received: 0,
                goaway: false,
                closed: false,
            }),
            next_id: tokio::sync::Mutex::new(first_id),
        });
        let (incoming_tx, incoming_rx) = match role {
            Role::Server => {
                let (tx, rx) = mpsc::channel(16);
                (Some(tx), Some(rx))
            }
            Role::Client => (None, None),
        };
        let (closed_tx, closed_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(write_loop(w, out_rx, ping_period, first_id - 1));
        tokio::spawn(read_loop(r, shared.clone(), incoming_tx, closed_tx, stop_rx));
        Self {
            shared,
            incoming: incoming_rx,
            closed: closed_rx,
            _stop: stop_tx,
        }
    }

    /// Opens a stream with `headers` and waits for the peer's reply.
    pub async fn open(&self, headers: Headers) -> Result<Stream, Error> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
        let id = {
            let mut next = self.shared.next_id.lock().await;
            let id = *next;
            if id > 0x7fff_ffff {
                return Err(Error::Closed);
            }
            {
                let mut st = self.shared.state();
                if st.closed {
                    return Err(Error::Closed);
                }
                if st.goaway {
                    return Err(Error::GoneAway);
                }
                st.streams.insert(
                    id,
                    Entry {
                        data: Some(data_tx),
                        reply: Some(reply_tx),
                    },
                );
            }
            let syn = Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: headers.clone(),
            };
            if self.shared.out.send(Out::Frame(syn)).await.is_err() {
                self.shared.state().streams.remove(&id);
                return Err(Error::Closed);
            }
            *next += 2;
            id
        };
        let replied = match tokio::time::timeout(REPLY_TIMEOUT, reply_rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => {
                self.shared.state().streams.remove(&id);
                self.shared.send_soon(Frame::RstStream {
                    stream_id: id,
                    status: rst::CANCEL,
                });
                Err(Error::Timeout)
            }
        };
        replied?;
        Ok(Stream {
            headers,
            reader: StreamReader { rx: data_rx },
            writer: StreamWriter {
                id,
                out: self.shared.out.clone(),
                finished: false,
            },
        })
    }

    /// The next stream the peer opens; `None` once the connection is over
    /// (or for a client, which accepts none).
    pub async fn accept(&mut self) -> Option<IncomingStream> {
        self.incoming.as_mut()?.recv().await
    }

    /// Resolves once the peer's side of the connection has ended.
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Sends GOAWAY, closes the write side and waits a moment for the
    /// peer to close its side (spdystream does once its streams are done).
    pub async fn close(self) {
        let last = self.shared.state().last_received;
        let goaway = Frame::GoAway {
            last_good_stream_id: last,
            status: goaway::OK,
        };
        let _ = self.shared.out.send(Out::Frame(goaway)).await;
        let _ = self.shared.out.send(Out::Shutdown).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.closed()).await;
    }

    /// Resets every stream still open, then closes (what Kubernetes'
    /// httpstream connection does on Close).
    pub async fn reset_and_close(self) {
        let ids: Vec<u32> = self.shared.state().streams.keys().copied().collect();
        for stream_id in ids {
            let rst = Frame::RstStream {
                stream_id,
                status: rst::CANCEL,
            };
            let _ = self.shared.out.send(Out::Frame(rst)).await;
        }
        self.close().await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Flushes what is queued, then closes the write side.
        if let Err(mpsc::error::TrySendError::Full(item)) = self.shared.out.try_send(Out::Shutdown) {
            let out = self.shared.out.clone();
            tokio::spawn(async move {
                let _ = out.send(item).await;
            });
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut r: R,
    shared: Arc<Shared>,
    incoming: Option<mpsc::Sender<IncomingStream>>,
    closed: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(32 * 1024);
    let result: Result<(), Error> = async {
        loop {
            while let Some(frame) = decoder.decode(&mut buf)? {
                tokio::select! {
                    _ = shared.dispatch(frame, incoming.as_ref()) => {}
                    _ = &mut stop => return Ok(()),
                }
            }
            buf.reserve(16 * 1024);
            tokio::select! {
                n = r.read_buf(&mut buf) => {
                    if n? == 0 {
                        return Ok(());
                    }
                }
                _ = &mut stop => return Ok(()),
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "SPDY connection read ended");
        if matches!(e, Error::Frame(_)) {
            shared.send_soon(Frame::GoAway {
                last_good_stream_id: shared.state().last_received,
                status: goaway::PROTOCOL_ERROR,
            });
        }
    }
    let mut st = shared.state();
    st.closed = true;
    for (_, e) in st.streams.drain() {
        if let Some(reply) = e.reply {
            let _ = reply.send(Err(Error::Closed));
        }
    }
    drop(st);
    let _ = closed.send(true);
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Out>,
    ping_period: Option<Duration>,
    mut last_ping: u32,
) {
    let mut encoder = Encoder::new();
    let mut buf = BytesMut::new();
    let mut ticker = ping_period.map(|p| tokio::time::interval_at(tokio::time::Instant::now() + p, p));
    loop {
        let first = match &mut ticker {
            Some(t) => tokio::select! {
                item = rx.recv() => item,
                _ = t.tick() => {
                    last_ping = last_ping.wrapping_add(2);
                    Some(Out::Frame(Frame::Ping { id: last_ping }))
                }
            },
            None => rx.recv().await,
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        let mut shutdown = false;
        // Batches what is queued into one write.
        while let Some(item) = next.take() {
            match item {
                Out::Frame(f) => {
                    if let Err(e) = encoder.encode(&f, &mut buf) {
                        tracing::debug!(error = %e, "SPDY frame not sent");
                    }
                }
                Out::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if buf.len() >= 64 * 1024 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !buf.is_empty() {
            if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
                return;
            }
            buf.clear();
        }
        if shutdown {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// A stream the peer opened, not yet answered.
pub struct IncomingStream {
    id: u32,
    headers: Headers,
    rx: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Out>,
}

impl IncomingStream {
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Accepts the stream (SYN_REPLY).
    pub async fn reply(self) -> Result<Stream, Error> {
        let reply = Frame::SynReply {
            stream_id: self.id,
            fin: false,
            headers: Headers::new(),
        };
        self.out.send(Out::Frame(reply)).await.map_err(|_| Error::Closed)?;
        Ok(Stream {
            headers: self.headers,
            reader: StreamReader { rx: self.rx },
            writer: StreamWriter {
                id: self.id,
                out: self.out,
                finished: false,
            },
        })
    }

    /// Refuses the stream (RST_STREAM with REFUSED_STREAM).
    pub async fn refuse(self) {
        let rst = Frame::RstStream {
            stream_id: self.id,
            status: rst::REFUSED_STREAM,
        };
        let _ = self.out.send(Out::Frame(rst)).await;
    }
}

/// An open stream: both halves.
pub struct Stream {
    headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

impl Stream {
    pub fn id(&self) -> u32 {
        self.writer.id
    }

    /// The headers it was opened with.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub async fn read(&mut self) -> Option<Bytes> {
        self.reader.read().await
    }

    pub async fn read_to_end(&mut self) -> Vec<u8> {
        self.reader.read_to_end().await
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        self.writer.write(data).await
    }

    pub async fn close(&mut self) -> Result<(), Error> {
        self.writer.close().await
    }

    pub async fn reset(&mut self) {
        self.writer.reset().await
    }

    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }
}

/// A stream's incoming half.
pub struct StreamReader {
    rx: mpsc::Receiver<Bytes>,
}

impl StreamReader {
    /// The next chunk the peer sent; `None` once it finished its half,
    /// reset the stream, or the connection ended.
    pub async fn read(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(b) = self.rx.recv().await {
            all.extend_from_slice(&b);
        }
        all
    }
}

/// A stream's outgoing half.
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
    finished: bool,
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends `data` (in frames of at most 32 KiB).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.finished {
            return Err(Error::Closed);
        }
        for chunk in data.chunks(MAX_DATA_FRAME) {
            let frame = Frame::Data {
                stream_id: self.id,
                fin: false,
                data: Bytes::copy_from_slice(chunk),
            };
            self.out.send(Out::Frame(frame)).await.map_err(|_| Error::Closed)?;
        }
        Ok(())
    }

    /// Ends this side's half (an empty DATA frame with FIN); once only.
    pub async fn close(&mut self) -> Result<(), Error> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        let fin = Frame::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
        };
        self.out.send(Out::Frame(fin)).await.map_err(|_| Error::Closed)
    }

    /// Ends both halves (RST_STREAM with CANCEL).
    pub async fn reset(&mut self) {
        self.finished = true;
        let rst = Frame::RstStream {
            stream_id: self.id,
            status: rst::CANCEL,
        };
        let _ = self.out.send(Out::Frame(rst)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_carry_data_both_ways_and_end_with_fin() {
        let (a, b) = tokio::io::duplex(1024);
        let client = Connection::new(a, Role::Client);
        let mut server = Connection::new(b, Role::Server);
        let srv = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(incoming) = server.accept().await {
                seen.push(incoming.headers().get("streamtype").unwrap_or("").to_string());
                let mut s = incoming.reply().await.expect("reply");
                tokio::spawn(async move {
                    // Echo in upper case until the client's FIN, then FIN.
                    while let Some(b) = s.read().await {
                        s.write(&b.to_ascii_uppercase()).await.expect("write");
                    }
                    s.close().await.expect("fin");
                });
                if seen.len() == 2 {
                    break;
                }
            }
            (seen, server)
        });
        let one = client
            .open(Headers::new().with("streamType", "stdin"))
            .await
            .expect("open");
        let mut two = client
            .open(Headers::new().with("streamType", "stdout"))
            .await
            .expect("open");
        assert_eq!((one.id(), two.id()), (1, 3));
        // More than one frame's worth, to see it split and reassembled.
        let big = vec![b'x'; 100_000];
        let (mut r1, mut w1) = one.split();
        let writer = tokio::spawn(async move {
            w1.write(&big).await.expect("write");
            w1.close().await.expect("fin");
        });
        two.write(b"hello").await.expect("write");
        two.close().await.expect("fin");
        assert_eq!(two.read_to_end().await, b"HELLO");
        let got = r1.read_to_end().await;
        writer.await.expect("writer");
        assert_eq!(got.len(), 100_000);
        assert!(got.iter().all(|&c| c == b'X'));
        let (seen, server) = srv.await.expect("server");
        assert_eq!(seen, ["stdin", "stdout"]);
        drop(server);
        client.close().await;
    }

    #[tokio::test]
    async fn a_refused_stream_fails_to_open_and_a_reset_ends_the_peers_read() {
        let (a, b) = tokio::io::duplex(1024);
        let client = Connection::new(a, Role::Client);
        let mut server = Connection::new(b, Role::Server);
        tokio::spawn(async move {
            let first = server.accept().await.expect("first");
            first.refuse().await;
            let mut second = server.accept().await.expect("second").reply().await.expect("reply");
            second.write(b"partial").await.expect("write");
            second.reset().await;
            server.closed().await;
        });
        let e = client.open(Headers::new()).await.err().expect("refused");
        assert!(matches!(e, Error::Reset(rst::REFUSED_STREAM)), "{e}");
        let mut s = client.open(Headers::new()).await.expect("open");
        assert_eq!(s.read_to_end().await, b"partial");
    }

    #[tokio::test]
    async fn pings_from_the_peer_are_echoed_and_a_client_accepts_no_streams() {
        let (a, b) = tokio::io::duplex(1024);
        let _client = Connection::new(a, Role::Client);
        let (mut r, mut w) = tokio::io::split(b);
        let mut enc = Encoder::new();
        let mut out = BytesMut::new();
        enc.encode(&Frame::Ping { id: 2 }, &mut out).expect("ping");
        enc.encode(
            &Frame::SynStream {
                stream_id: 2,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: Headers::new(),
            },
            &mut out,
        )
        .expect("syn");
        w.write_all(&out).await.expect("write");
        let mut dec = Decoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        while got.len() < 2 {
            while let Some(f) = dec.decode(&mut buf).expect("decode") {
                got.push(f);
            }
            if got.len() < 2 {
                assert_ne!(r.read_buf(&mut buf).await.expect("read"), 0);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame::Ping { id: 2 },
                Frame::RstStream {
                    stream_id: 2,
                    status: rst::REFUSED_STREAM
                }
            ]
        );
    }

    #[tokio::test]
    async fn the_connection_ending_ends_every_stream() {
        let (a, b) = tokio::io::duplex(1024);
        let client = Connection::new(a, Role::Client);
        let mut server = Connection::new(b, Role::Server);
        let srv = tokio::spawn(async move {
            let s = server.accept().await.expect("stream").reply().await.expect("reply");
            drop(server);
            s
        });
        let mut s = client.open(Headers::new()).await.expect("open");
        let _server_stream = srv.await.expect("server");
        assert_eq!(s.read().await, None);
        client.closed().await;
        assert!(matches!(client.open(Headers::new()).await, Err(Error::Closed)));
    }
}

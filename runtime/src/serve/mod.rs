//! `bt get --serve` / `bt seed --serve`: an HTTP/1.1 server (hyper) that streams a torrent's files
//! while they download.
//!
//! Routes: `/` lists the files as HTML links; `/files/INDEX/NAME` serves file INDEX (NAME must be
//! its path inside the torrent, percent-encoded, else 404; a file left out by `--select`/`--only`
//! is 403) with `GET` and `HEAD`, `Accept-Ranges: bytes` and one `Range` per request (206 with
//! `Content-Range`; a request for several ranges gets the whole file, 200; a range past the end
//! 416 with `Content-Range: bytes */LEN`); `/playlist.m3u` lists the video and audio files as
//! absolute URLs. Parsing is in [`request`], pages in [`pages`].
//!
//! Invariants:
//! - only verified bytes are served: a response reads a piece only once [`Progress`] has it,
//!   which the caller marks on `PieceVerified`, and the disk threads verify a piece only after
//!   its blocks are written ([`crate::disk`]), so the bytes read are the bytes hashed;
//! - a response is a reader of the torrent: it tells the driver its position through the
//!   driver's bounded command channel ([`crate::driver::Command::SetReader`]) each time it
//!   enters a piece, and removes itself when it ends or its client goes away, so the pieces it
//!   needs next come first; it reads as fast as bytes come, so it gives no pace (the client
//!   paces it at the torrent's download rate);
//! - input from a client never panics the process: a bad request gets a 4xx, a hostile
//!   connection is closed, and the download goes on.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections (more are answered 503 and closed); request
//! heads at most [`MAX_HEADER_BYTES`] bytes and [`MAX_HEADERS`] headers (hyper answers 431
//! past them), read within the idle timeout; a connection with no request in progress and no
//! byte moved for the idle timeout ([`IDLE_TIMEOUT`]) is closed; a response buffers at most
//! [`BODY_QUEUE`] chunks of [`CHUNK`] bytes, and ends by closing the connection mid-body when
//! it waited [`STALL_TIMEOUT`] for a piece or for its client to take a chunk; one request at a
//! time per connection (hyper reads pipelined requests in turn).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bt_protocol::metainfo::{BlockRef, TorrentLayout};
use bt_protocol::torrent::{Bitfield, ReadPosition, ReaderId};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::driver::Command;
use crate::storage::Storage;

pub mod pages;
pub mod request;

pub use pages::{Catalog, ServedFile};
use request::{RangeRequest, Target, TargetError, parse_range, parse_target};

/// Most connections open at once; a connection past them is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;

/// A connection with no request in progress and no byte read or written this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A response that waited this long for its next piece, or for its client to take a chunk,
/// ends (the connection closes mid-body); the download goes on.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The most bytes one read from the disk hands to a response.
pub const CHUNK: usize = 64 * 1024;

/// Chunks a response holds ready before it waits for its client.
pub const BODY_QUEUE: usize = 4;

/// The largest request head (request line and headers) read, in bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The most headers a request may have.
pub const MAX_HEADERS: usize = 64;

/// Timeouts of a [`Server`] (the defaults are [`IDLE_TIMEOUT`] and [`STALL_TIMEOUT`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// See [`IDLE_TIMEOUT`]; also bounds reading a request head.
    pub idle: Duration,
    /// See [`STALL_TIMEOUT`].
    pub stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            idle: IDLE_TIMEOUT,
            stall: STALL_TIMEOUT,
        }
    }
}

/// The torrent's progress as the responses need it: its verified pieces, shared by whoever
/// learns of them (the driver's caller) and the responses waiting on them.
#[derive(Clone, Debug)]
pub struct Progress {
    verified: Arc<watch::Sender<Bitfield>>,
}

impl Progress {
    /// Starting from the pieces `have` verified.
    pub fn new(have: Bitfield) -> Self {
        Progress {
            verified: Arc::new(watch::Sender::new(have)),
        }
    }

    /// Piece `piece` is verified and on disk: responses waiting for it go on.
    pub fn mark_verified(&self, piece: u32) {
        self.verified.send_if_modified(|have| have.set(piece));
    }
}

/// What every connection of a [`Server`] shares.
struct Shared<D: Storage> {
    catalog: Catalog,
    layout: TorrentLayout,
    storage: Arc<D>,
    progress: Progress,
    readers: mpsc::Sender<Command>,
    next_reader: AtomicU64,
    timeouts: Timeouts,
}

/// A running server; dropping it stops it (its connections with it).
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `addr` and serves `catalog`'s files from `storage` (laid out as `layout`), waiting
    /// for pieces through `progress` and telling the driver where each response reads through
    /// `readers`. Call it inside the tokio runtime.
    pub fn start<D: Storage + 'static>(
        addr: SocketAddr,
        catalog: Catalog,
        layout: TorrentLayout,
        storage: Arc<D>,
        progress: Progress,
        readers: mpsc::Sender<Command>,
        timeouts: Timeouts,
    ) -> io::Result<Server> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            catalog,
            layout,
            storage,
            progress,
            readers,
            next_reader: AtomicU64::new(0),
            timeouts,
        });
        let task = tokio::spawn(accept_loop(listener, shared));
        Ok(Server { local_addr, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL of its index page.
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The answer to a connection past [`MAX_CONNECTIONS`].
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 22\r\nConnection: close\r\nRetry-After: 1\r\n\r\ntoo many connections\r\n";

async fn accept_loop<D: Storage + 'static>(listener: TcpListener, shared: Arc<Shared<D>>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropped with this task: every connection ends with the server.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors, say: wait rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // One non-blocking write: a client that does not read it just sees the close.
            let _ = stream.try_write(BUSY);
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            serve_connection(stream, shared).await;
            drop(permit);
        });
    }
}

/// When a connection last moved a byte, and how many of its responses are open.
struct Activity {
    start: tokio::time::Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Counts an open response on its connection while it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A socket that notes in its [`Activity`] every byte it moves.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

async fn serve_connection<D: Storage + 'static>(stream: TcpStream, shared: Arc<Shared<D>>) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let idle = shared.timeouts.idle;
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request| {
            let (shared, activity) = (shared.clone(), activity.clone());
            async move { Ok::<_, Infallible>(respond(&shared, &activity, local, &request)) }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .max_headers(MAX_HEADERS)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    loop {
        let wait = idle
            .saturating_sub(activity.idle_for())
            .max(Duration::from_millis(100));
        tokio::select! {
            biased;
            _ = &mut connection => return,
            _ = tokio::time::sleep(wait) => {
                if activity.busy.load(Ordering::Relaxed) == 0 && activity.idle_for() >= idle {
                    // Dropping the connection closes the socket.
                    return;
                }
            }
        }
    }
}

/// A response body: a page, nothing, or a file's bytes as they are verified.
enum ServeBody {
    /// All of it at once.
    Full(Option<Bytes>),
    /// A file's bytes, streamed by a task that waits for their pieces.
    Stream {
        /// The chunks (an error ends the body: hyper closes the connection mid-body).
        rx: mpsc::Receiver<io::Result<Bytes>>,
        /// Bytes still to come.
        remaining: u64,
        /// Keeps the connection counted as busy (not idle) while the body lives.
        _busy: Busy,
    },
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ServeBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ServeBody::Stream { remaining: 0, .. } => Poll::Ready(None),
            ServeBody::Stream { rx, remaining, .. } => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    *remaining = remaining.saturating_sub(chunk.len() as u64);
                    Poll::Ready(Some(Ok(Frame::data(chunk))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the response ended early",
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ServeBody::Full(data) => data.is_none(),
            ServeBody::Stream { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServeBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ServeBody::Stream { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

/// A plain-text answer with `status` and `text`.
fn text(status: StatusCode, text: String) -> Response<ServeBody> {
    let mut response = Response::new(ServeBody::Full(Some(Bytes::from(text + "\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn page(content_type: &'static str, body: String, head: bool) -> Response<ServeBody> {
    let len = body.len();
    let mut response = Response::new(ServeBody::Full((!head).then(|| Bytes::from(body))));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

fn respond<D: Storage + 'static>(
    shared: &Arc<Shared<D>>,
    activity: &Arc<Activity>,
    local: SocketAddr,
    request: &Request<Incoming>,
) -> Response<ServeBody> {
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served".into(),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let catalog = &shared.catalog;
    match parse_target(request.uri().path()) {
        Ok(Target::Index) => page("text/html; charset=utf-8", pages::index_html(catalog), head),
        Ok(Target::Playlist) => page(
            "audio/x-mpegurl; charset=utf-8",
            pages::playlist_m3u(catalog, local),
            head,
        ),
        Ok(Target::File { index, name }) => {
            let file = match catalog.files.get(index) {
                Some(f) if !f.padding && f.path == name => f,
                _ => {
                    return text(
                        StatusCode::NOT_FOUND,
                        format!("no file {index} named {name}"),
                    );
                }
            };
            if !file.selected {
                return text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "file {index} ({}) is not selected for download (--select/--only)",
                        file.path
                    ),
                );
            }
            let range = parse_range(
                request
                    .headers()
                    .get(header::RANGE)
                    .map(HeaderValue::as_bytes),
                file.length,
            );
            file_response(shared, activity, file, range, head)
        }
        Err(e @ TargetError::NotFound) => text(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ TargetError::BadPath(_)) => text(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

fn file_response<D: Storage + 'static>(
    shared: &Arc<Shared<D>>,
    activity: &Arc<Activity>,
    file: &ServedFile,
    range: RangeRequest,
    head: bool,
) -> Response<ServeBody> {
    let (status, start, len) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, file.length),
        RangeRequest::Partial { start, last } => {
            (StatusCode::PARTIAL_CONTENT, start, last - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            let mut response = text(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the file is {} bytes long", file.length),
            );
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(format!("bytes */{}", file.length)),
            );
            return response;
        }
    };
    let body = if head || len == 0 {
        ServeBody::Full(None)
    } else {
        let (tx, rx) = mpsc::channel(BODY_QUEUE);
        let from = file.offset + start;
        tokio::spawn(stream_file(shared.clone(), from, from + len, tx));
        ServeBody::Stream {
            rx,
            remaining: len,
            _busy: Busy::new(activity),
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(pages::content_type(&file.path)),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        headers.insert(
            header::CONTENT_RANGE,
            header_value(format!("bytes {start}-{}/{}", start + len - 1, file.length)),
        );
    }
    response
}

/// A header value from text made of digits, spaces and ASCII punctuation.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Removes a reader from the driver when its response ends, however it ends.
struct ReaderGuard {
    readers: mpsc::Sender<Command>,
    command: Command,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let (readers, command) = (self.readers.clone(), self.command);
        if let Err(mpsc::error::TrySendError::Full(_)) = readers.try_send(command)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // At most one such task per response that ended while the channel was full.
            runtime.spawn(async move {
                let _ = readers.send(command).await;
            });
        }
    }
}

/// Sends the torrent's bytes `from..to` (torrent-wide offsets) into `tx`, each piece once it is
/// verified, telling the driver where it reads; ends early (an error in the body) after
/// [`Timeouts::stall`] without progress, and quietly when the client goes away.
async fn stream_file<D: Storage + 'static>(
    shared: Arc<Shared<D>>,
    from: u64,
    to: u64,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    let torrent = shared.catalog.torrent;
    let reader = ReaderId(shared.next_reader.fetch_add(1, Ordering::Relaxed));
    let _guard = ReaderGuard {
        readers: shared.readers.clone(),
        command: Command::RemoveReader { torrent, reader },
    };
    let stall = shared.timeouts.stall;
    let mut verified = shared.progress.verified.subscribe();
    let piece_length = u64::from(shared.layout.piece_length());
    let mut position = from;
    let mut told: Option<u32> = None;
    let end_early = |why: &str| io::Error::new(io::ErrorKind::TimedOut, why.to_owned());
    while position < to {
        let Some(piece) = u32::try_from(position / piece_length)
            .ok()
            .and_then(|p| shared.layout.piece(p))
        else {
            return;
        };
        if told != Some(piece.get()) {
            told = Some(piece.get());
            let command = Command::SetReader {
                torrent,
                reader,
                position: ReadPosition {
                    offset: position,
                    end: to,
                    rate: None,
                },
            };
            tokio::select! {
                biased;
                _ = tx.closed() => return,
                sent = shared.readers.send(command) => if sent.is_err() { return },
                _ = tokio::time::sleep(stall) => {}
            }
        }
        let deadline = tokio::time::sleep(stall);
        tokio::pin!(deadline);
        while !verified.borrow_and_update().get(piece.get()) {
            tokio::select! {
                biased;
                _ = tx.closed() => return,
                changed = verified.changed() => if changed.is_err() { return },
                _ = &mut deadline => {
                    let _ = tx.try_send(Err(end_early("no progress: the piece did not arrive")));
                    return;
                }
            }
        }
        let piece_start = shared.layout.piece_offset(piece);
        let piece_end = piece_start + u64::from(shared.layout.piece_len(piece));
        let chunk_end = to.min(piece_end).min(position + CHUNK as u64);
        let block = BlockRef {
            piece,
            offset: (position - piece_start) as u32,
            len: (chunk_end - position) as u32,
        };
        let storage = shared.storage.clone();
        let data = match tokio::task::spawn_blocking(move || storage.read(block)).await {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(e)) => Err(io::Error::other(e.to_string())),
            Err(e) => Err(io::Error::other(e.to_string())),
        };
        let failed = data.is_err();
        tokio::select! {
            biased;
            sent = tx.send(data) => if sent.is_err() || failed { return },
            _ = tokio::time::sleep(stall) => return,
        }
        position = chunk_end;
    }
}

#[cfg(test)]
mod tests;

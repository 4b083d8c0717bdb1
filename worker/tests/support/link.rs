//! A TCP proxy between a test's workers and RabbitMQ that the test can break:
//! the worker <-> broker link fault of issue #12.
//!
//! [`Link::start`] listens on a free port of 127.0.0.1 and forwards every
//! connection to the broker of `WARREN_AMQP_URL`; [`Link::url`] is that URL with
//! the proxy in its place, for a worker's `--amqp-url`. The test then:
//!
//! - [`Link::cut`]s it: every open connection is reset (a TCP RST on both sides,
//!   `SO_LINGER` 0), as when a middlebox or a node's network dies, and new
//!   connections are reset as soon as they arrive, until
//! - [`Link::restore`], after which it accepts and forwards again;
//! - or [`Link::stall`]s it: the silent partition. Connections stay open but no
//!   byte moves either way, so each end learns of it only by missing heartbeats;
//!   new connections are held the same way. Restoring resumes them with nothing
//!   lost or reordered, as TCP does when a partition heals.
//!
//! It counts the connections it forwarded, so a test can tell that a worker came
//! back through it after a restore rather than only that results arrived.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lapin::uri::AMQPUri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::amqp_url;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    Stalled,
    Cut,
}

/// What every connection watches. `cuts` counts the cuts so far: a connection
/// ends when it differs from the count at its start, so that a cut and a restore
/// in quick succession still end it even if it never saw `Mode::Cut` itself (a
/// watch channel keeps only the latest value).
#[derive(Debug, Clone, Copy)]
struct State {
    mode: Mode,
    cuts: u64,
}

#[derive(Debug, Default)]
struct Counts {
    accepted: AtomicU64,
    refused: AtomicU64,
    open: AtomicU64,
}

pub struct Link {
    addr: SocketAddr,
    upstream: AMQPUri,
    state: watch::Sender<State>,
    counts: Arc<Counts>,
    acceptor: JoinHandle<()>,
}

impl Link {
    /// Listens on a free port and forwards to the broker of `WARREN_AMQP_URL`.
    pub async fn start() -> Self {
        let upstream: AMQPUri = amqp_url().parse().expect("WARREN_AMQP_URL parses");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (state, _) = watch::channel(State {
            mode: Mode::Open,
            cuts: 0,
        });
        let counts = Arc::new(Counts::default());
        let target = (upstream.authority.host.clone(), upstream.authority.port);
        let acceptor = tokio::spawn(accept(listener, target, state.clone(), Arc::clone(&counts)));
        Self {
            addr,
            upstream,
            state,
            counts,
            acceptor,
        }
    }

    /// The broker URL (credentials, vhost) with the proxy as host and port, and
    /// `heartbeat` seconds proposed to the broker if given (the lower of the
    /// client's and the broker's proposals wins).
    pub fn url(&self, heartbeat: Option<u16>) -> String {
        let mut uri = self.upstream.clone();
        uri.authority.host = self.addr.ip().to_string();
        uri.authority.port = self.addr.port();
        if heartbeat.is_some() {
            uri.query.heartbeat = heartbeat;
        }
        uri.to_string()
    }

    /// Resets every connection and every new one until [`Link::restore`].
    pub fn cut(&self) {
        self.state.send_modify(|s| {
            s.mode = Mode::Cut;
            s.cuts += 1;
        });
    }

    /// Moves no byte until [`Link::restore`], closes nothing.
    pub fn stall(&self) {
        self.state.send_modify(|s| s.mode = Mode::Stalled);
    }

    /// Accepts and forwards again; stalled connections resume.
    pub fn restore(&self) {
        self.state.send_modify(|s| s.mode = Mode::Open);
    }

    /// Connections forwarded (or, while stalled, held) since the start.
    pub fn accepted(&self) -> u64 {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Connections reset on arrival because the link was cut.
    pub fn refused(&self) -> u64 {
        self.counts.refused.load(Ordering::SeqCst)
    }

    /// Connections open through the proxy now.
    pub fn open(&self) -> u64 {
        self.counts.open.load(Ordering::SeqCst)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Connection tasks outlive the acceptor; a last cut ends them.
        self.acceptor.abort();
        self.cut();
    }
}

async fn accept(
    listener: TcpListener,
    target: (String, u16),
    state: watch::Sender<State>,
    counts: Arc<Counts>,
) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            // A failed accept (out of descriptors, say) concerns that connection
            // only; the pause keeps a lasting one from spinning.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let now = *state.borrow();
        if now.mode == Mode::Cut {
            // Resetting what arrives keeps the port ours for the restore, which
            // closing the listener would not; to the client it looks the same as
            // a refused connection: its first read fails.
            counts.refused.fetch_add(1, Ordering::SeqCst);
            reset(&client);
            continue;
        }
        counts.accepted.fetch_add(1, Ordering::SeqCst);
        counts.open.fetch_add(1, Ordering::SeqCst);
        let conn = Connection {
            counts: Arc::clone(&counts),
            state: state.subscribe(),
            cuts: now.cuts,
        };
        tokio::spawn(conn.forward(client, target.clone()));
    }
}

fn reset(stream: &TcpStream) {
    // SO_LINGER 0: the close that follows (on drop) sends RST, not FIN.
    let _ = stream.set_zero_linger();
}

/// One proxied connection; counted as open from its accept until it is dropped.
struct Connection {
    counts: Arc<Counts>,
    state: watch::Receiver<State>,
    /// The cut count when it was accepted.
    cuts: u64,
}

impl Connection {
    async fn forward(mut self, mut client: TcpStream, target: (String, u16)) {
        let cuts = self.cuts;
        // While stalled, as in a partition, not even the broker hears of it.
        let go = self
            .state
            .wait_for(|s| s.cuts != cuts || s.mode == Mode::Open)
            .await
            .map(|s| s.cuts == cuts);
        let mut upstream = match go {
            Ok(true) => match TcpStream::connect((target.0.as_str(), target.1)).await {
                Ok(upstream) => upstream,
                Err(_) => return reset(&client),
            },
            _ => return reset(&client),
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let ended = {
            let (client_in, client_out) = client.split();
            let (upstream_in, upstream_out) = upstream.split();
            let mut watch = self.state.clone();
            tokio::select! {
                ended = async {
                    tokio::try_join!(
                        pump(client_in, upstream_out, self.state.clone(), cuts),
                        pump(upstream_in, client_out, self.state.clone(), cuts),
                    )
                } => ended.map(drop),
                _ = watch.wait_for(|s| s.cuts != cuts) => Err(cut_error()),
            }
        };
        // Cut, or one side reset or failed: the other side gets a reset too. Both
        // sides ending their stream (FIN each way) is the only clean close.
        if ended.is_err() {
            reset(&client);
            reset(&upstream);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.counts.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until the end of `from`'s stream, which it passes on
/// (FIN), or an error, a cut, or the proxy's end.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    mut state: watch::Receiver<State>,
    cuts: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = from.read(&mut buf).await;
        // Read during a stall, bytes and the end of the stream alike are held
        // until the restore: a partition neither delivers nor loses anything.
        let now = state
            .wait_for(|s| s.mode != Mode::Stalled || s.cuts != cuts)
            .await
            .map(|s| *s)
            .map_err(|_| cut_error())?;
        if now.cuts != cuts {
            return Err(cut_error());
        }
        match read? {
            0 => return to.shutdown().await,
            n => to.write_all(&buf[..n]).await?,
        }
    }
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "link cut")
}

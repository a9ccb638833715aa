//! A live preview over HTTP: every GET gets a `multipart/x-mixed-replace` stream of JPEG frames (what
//! browsers and `ffplay` show as video). Bound to 127.0.0.1 unless told otherwise. Each client has its
//! own thread and always gets the newest frame: a slow client skips frames instead of queueing them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use image::RgbImage;

use super::{display_err, Display};
use crate::error::{Error, Result};

/// The multipart boundary between frames.
pub const BOUNDARY: &str = "gagaframe";
/// JPEG quality of the preview: a preview, so smaller frames beat fidelity.
const QUALITY: u8 = 80;
/// How often idle threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Shared {
    /// Sequence number and bytes of the newest JPEG.
    latest: Mutex<(u64, Arc<Vec<u8>>)>,
    fresh: Condvar,
    stop: AtomicBool,
}

/// Serves the frames it is shown as an MJPEG stream.
pub struct MjpegHttpDisplay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl MjpegHttpDisplay {
    /// Listens on `addr` (`127.0.0.1:8080`; port 0 picks a free one, see [`MjpegHttpDisplay::local_addr`]).
    pub fn bind(addr: &str) -> Result<Self> {
        let listener = TcpListener::bind(addr).map_err(|e| display_err(format!("http:{addr}"), format!("cannot listen: {e}")))?;
        let local = listener.local_addr().map_err(|e| Error::Other(format!("http:{addr}: {e}")))?;
        listener.set_nonblocking(true).map_err(|e| Error::Other(format!("http:{addr}: {e}")))?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("mjpeg-accept".into())
            .spawn(move || accept_loop(listener, s))
            .map_err(|e| Error::Other(format!("http:{addr}: cannot start a thread: {e}")))?;
        log::info!("MJPEG preview on http://{local}/");
        Ok(MjpegHttpDisplay { addr: local, shared, accept: Some(accept) })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let s = shared.clone();
                let spawned = std::thread::Builder::new().name("mjpeg-client".into()).spawn(move || {
                    if let Err(e) = serve(stream, &s) {
                        log::debug!("MJPEG client {peer}: {e}");
                    }
                });
                if let Err(e) = spawned {
                    log::warn!("MJPEG client {peer}: cannot start a thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                log::warn!("MJPEG accept: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Reads the request head (bounded), answers with the stream header, then sends each new frame.
fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    if !head.starts_with(b"GET ") {
        return stream.write_all(b"HTTP/1.0 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n\r\n");
    }
    write!(stream, "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n")?;
    let mut sent = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let jpeg = {
            let guard = shared.latest.lock().map_err(|_| std::io::Error::other("poisoned"))?;
            let (guard, _) =
                shared.fresh.wait_timeout_while(guard, POLL, |l| l.0 == sent).map_err(|_| std::io::Error::other("poisoned"))?;
            if guard.0 == sent {
                continue;
            }
            sent = guard.0;
            guard.1.clone()
        };
        write!(stream, "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", jpeg.len())?;
        stream.write_all(&jpeg)?;
        stream.write_all(b"\r\n")?;
    }
    Ok(())
}

impl Display for MjpegHttpDisplay {
    fn show(&mut self, frame: &RgbImage) -> Result<()> {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, QUALITY)
            .encode_image(frame)
            .map_err(|e| display_err(self.describe(), format!("JPEG: {e}")))?;
        let mut latest = self.shared.latest.lock().map_err(|_| display_err(self.describe(), "lock poisoned"))?;
        *latest = (latest.0 + 1, Arc::new(jpeg));
        self.shared.fresh.notify_all();
        Ok(())
    }

    fn describe(&self) -> String {
        format!("MJPEG over HTTP at http://{}/", self.addr)
    }
}

impl Drop for MjpegHttpDisplay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

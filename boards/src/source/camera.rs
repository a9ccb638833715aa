//! A V4L2 camera that always delivers the newest frame and survives being unplugged.
//!
//! The pieces are separate so they can be tested without a camera: [`choose_format`] picks what to ask
//! the driver for, [`take_newest`] drains a [`CaptureDevice`] queue so old buffered frames are skipped
//! (default V4L2 buffering is where 0.3-5 s of kiosk lag comes from), and [`Backoff`] paces reconnects.
//! [`Camera`] combines them over any [`Opener`]; [`V4lCamera`] is it over a real `/dev/videoN`.

use std::time::{Duration, Instant};

use image::RgbImage;

use super::{pixels, FrameSource};
use crate::error::{Error, Result};
use crate::frame::Frame;

/// Pixel formats the camera path can decode. `Auto` lets [`choose_format`] pick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    #[default]
    Auto,
    Yuyv,
    Mjpeg,
}

/// What the user asks of the camera.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraConfig {
    pub device: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub format: PixelFormat,
}

/// One size and its frame rates, for one format, as the driver offers them.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub fps: Vec<u32>,
}

/// What [`choose_format`] settles on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// Picks format, size and rate from the driver's offers: the requested format (for `Auto`, YUYV when it
/// comes at the requested size and rate, since it needs no decoding, else MJPEG); then the offered size
/// closest in area (ties to the larger); then the rate closest to the request. `None` when nothing usable.
pub fn choose_format(offers: &[Offer], want: &CameraConfig) -> Option<Choice> {
    let usable = |f: PixelFormat| offers.iter().filter(move |o| o.format == f && !o.fps.is_empty());
    let exact = |f: PixelFormat| usable(f).any(|o| o.width == want.width && o.height == want.height && o.fps.contains(&want.fps));
    let format = match want.format {
        PixelFormat::Auto if exact(PixelFormat::Yuyv) => PixelFormat::Yuyv,
        PixelFormat::Auto if usable(PixelFormat::Mjpeg).next().is_some() => PixelFormat::Mjpeg,
        PixelFormat::Auto => PixelFormat::Yuyv,
        f => f,
    };
    let area = |w: u32, h: u32| i64::from(w) * i64::from(h);
    let target = area(want.width, want.height);
    let best = usable(format).min_by_key(|o| ((area(o.width, o.height) - target).abs(), -area(o.width, o.height)))?;
    let fps = *best.fps.iter().min_by_key(|&&r| (i64::from(r) - i64::from(want.fps)).abs())?;
    Some(Choice { format, width: best.width, height: best.height, fps })
}

/// A capture queue: dequeue copies the buffer into the device's own storage and re-queues the previous one.
pub trait CaptureDevice {
    /// Waits (bounded) for the next filled buffer; returns the driver's sequence number.
    fn dequeue(&mut self) -> std::io::Result<u32>;
    /// True when another filled buffer is waiting right now.
    fn ready(&mut self) -> std::io::Result<bool>;
    /// Bytes of the last dequeued buffer.
    fn data(&self) -> &[u8];
    /// The negotiated format.
    fn choice(&self) -> Choice;
}

/// At most this many buffers are skipped per call; with 2 driver buffers it is never reached.
const MAX_DRAIN: u32 = 8;

/// Dequeues, then keeps dequeuing while more buffers are ready, so the caller gets the newest frame.
/// Returns its sequence number and how many older frames were dropped.
pub fn take_newest<D: CaptureDevice + ?Sized>(dev: &mut D) -> std::io::Result<(u32, u32)> {
    let mut seq = dev.dequeue()?;
    let mut skipped = 0;
    while skipped < MAX_DRAIN && dev.ready()? {
        seq = dev.dequeue()?;
        skipped += 1;
    }
    Ok((seq, skipped))
}

/// Exponential backoff between reconnect attempts: `initial`, doubled per failure, capped at `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    attempt: u32,
    next_try: Option<Instant>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, attempt: 0, next_try: None }
    }
    /// Records a failure at `now`; returns the wait before the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let wait = self.initial.saturating_mul(1 << self.attempt.min(16)).min(self.max);
        self.attempt += 1;
        self.next_try = Some(now + wait);
        wait
    }
    /// Forgets past failures (after a successful open).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.next_try = None;
    }
    /// Failures since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// How long to wait at `now` before trying again (zero when due).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.next_try.map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }
}

/// Opens the device; called again after each loss.
pub trait Opener {
    type Device: CaptureDevice;
    fn open(&mut self) -> std::io::Result<Self::Device>;
    fn name(&self) -> &str;
}

/// A camera over any [`Opener`]: newest-frame delivery, decoding, and reconnect with backoff. While the
/// device is gone, each `next_frame` waits out the backoff (at most `Backoff::max`), tries once, and
/// returns a [`Error::CameraLost`] frame error, so the caller keeps control and keeps showing its last frame.
pub struct Camera<O: Opener> {
    opener: O,
    device: Option<O::Device>,
    backoff: Backoff,
    /// Frames dropped by the newest-frame policy since opening.
    pub skipped: u64,
}

impl<O: Opener> Camera<O> {
    pub fn new(opener: O, backoff: Backoff) -> Self {
        Camera { opener, device: None, backoff, skipped: 0 }
    }

    fn lost(&mut self, what: String) -> Error {
        self.device = None;
        let wait = self.backoff.failed(Instant::now());
        Error::CameraLost { device: self.opener.name().into(), what, attempt: self.backoff.attempt(), retry_ms: wait.as_millis() as u64 }
    }
}

fn describe_io(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(19) => "ENODEV: unplugged".into(),
        _ => e.to_string(),
    }
}

impl<O: Opener> FrameSource for Camera<O> {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        if self.device.is_none() {
            std::thread::sleep(self.backoff.remaining(Instant::now()));
            match self.opener.open() {
                Ok(d) => {
                    log::info!("{}: opened, {:?}", self.opener.name(), d.choice());
                    self.device = Some(d);
                    self.backoff.reset();
                }
                Err(e) => return Err(self.lost(describe_io(&e))),
            }
        }
        let Some(dev) = self.device.as_mut() else { return Err(Error::Other("camera: no device".into())) };
        let (seq, skipped) = match take_newest(dev) {
            Ok(r) => r,
            Err(e) => return Err(self.lost(describe_io(&e))),
        };
        let captured = Instant::now();
        self.skipped += u64::from(skipped);
        let c = dev.choice();
        let decoded: std::result::Result<RgbImage, String> = match c.format {
            PixelFormat::Mjpeg => pixels::mjpeg_to_rgb(dev.data()),
            _ => pixels::yuyv_to_rgb(dev.data(), c.width, c.height),
        };
        let image = decoded.map_err(|what| Error::BadFrame { source_name: self.opener.name().into(), index: u64::from(seq), what })?;
        Ok(Some(Frame { image, captured, index: u64::from(seq) }))
    }

    fn describe(&self) -> String {
        match &self.device {
            Some(d) => format!("{} ({:?})", self.opener.name(), d.choice()),
            None => format!("{} (not open)", self.opener.name()),
        }
    }
}

/// A V4L2 camera (`/dev/videoN`) with at most 2 buffers.
#[cfg(target_os = "linux")]
pub type V4lCamera = Camera<super::v4l_device::V4lOpener>;

#[cfg(target_os = "linux")]
impl V4lCamera {
    /// Sets up the camera; the device is opened on the first `next_frame` (and reopened after a loss).
    pub fn open(config: CameraConfig) -> Self {
        Camera::new(super::v4l_device::V4lOpener::new(config), Backoff::new(Duration::from_millis(200), Duration::from_secs(2)))
    }
}

#[cfg(test)]
#[path = "camera_tests.rs"]
mod tests;

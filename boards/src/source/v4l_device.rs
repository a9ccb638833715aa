//! The real V4L2 device behind [`V4lCamera`](super::V4lCamera): open, negotiate, stream with 2 mmap
//! buffers. Only this file touches the `v4l` crate.

use std::io;
use std::time::Duration;

use v4l::buffer::Type;
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::camera::{choose_format, CameraConfig, CaptureDevice, Choice, Offer, Opener, PixelFormat};

/// Two buffers: one being filled by the driver while we hold the other. More only adds lag.
const BUFFERS: u32 = 2;
/// A dequeue waits at most this long; a silent camera is treated as lost.
const DEQUEUE_TIMEOUT: Duration = Duration::from_secs(2);

fn fourcc(f: PixelFormat) -> FourCC {
    match f {
        PixelFormat::Mjpeg => FourCC::new(b"MJPG"),
        _ => FourCC::new(b"YUYV"),
    }
}

/// Opens and negotiates the configured device.
pub struct V4lOpener {
    config: CameraConfig,
}

impl V4lOpener {
    pub fn new(config: CameraConfig) -> Self {
        V4lOpener { config }
    }
}

/// Lists (format, size, rates) for YUYV and MJPEG as the driver reports them.
fn offers(dev: &Device) -> io::Result<Vec<Offer>> {
    let mut out = Vec::new();
    for format in [PixelFormat::Yuyv, PixelFormat::Mjpeg] {
        let cc = fourcc(format);
        let Ok(sizes) = dev.enum_framesizes(cc) else { continue };
        for size in sizes {
            let discrete: Vec<_> = match size.size {
                FrameSizeEnum::Discrete(d) => vec![d],
                FrameSizeEnum::Stepwise(_) => size.size.to_discrete().into_iter().collect(),
            };
            for d in discrete {
                let fps = dev
                    .enum_frameintervals(cc, d.width, d.height)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|i| match i.interval {
                        v4l::frameinterval::FrameIntervalEnum::Discrete(f) if f.numerator > 0 => Some(f.denominator / f.numerator),
                        _ => None,
                    })
                    .collect();
                out.push(Offer { format, width: d.width, height: d.height, fps });
            }
        }
    }
    Ok(out)
}

impl Opener for V4lOpener {
    type Device = V4lDevice;

    fn open(&mut self) -> io::Result<V4lDevice> {
        let dev = Device::with_path(&self.config.device)?;
        let offered = offers(&dev)?;
        let choice = choose_format(&offered, &self.config).ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, format!("offers neither YUYV nor MJPEG (found {} sizes)", offered.len()))
        })?;
        let mut fmt = dev.format()?;
        fmt.width = choice.width;
        fmt.height = choice.height;
        fmt.fourcc = fourcc(choice.format);
        let set = dev.set_format(&fmt)?;
        if set.fourcc != fmt.fourcc || set.width != choice.width || set.height != choice.height {
            return Err(io::Error::other(format!("asked {:?}, driver set {}x{} {}", choice, set.width, set.height, set.fourcc)));
        }
        if let Ok(mut params) = dev.params() {
            params.interval = v4l::Fraction::new(1, choice.fps.max(1));
            let _ = dev.set_params(&params); // some drivers fix the rate; the size is what matters
        }
        let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, BUFFERS)?;
        stream.set_timeout(DEQUEUE_TIMEOUT);
        Ok(V4lDevice { stream, dev, choice, data: Vec::new() })
    }

    fn name(&self) -> &str {
        &self.config.device
    }
}

/// A streaming device; `stream` is declared first so it stops before the device closes.
pub struct V4lDevice {
    stream: Stream<'static>,
    dev: Device,
    choice: Choice,
    data: Vec<u8>,
}

impl CaptureDevice for V4lDevice {
    fn dequeue(&mut self) -> io::Result<u32> {
        let (bytes, meta) = self.stream.next()?;
        let used = (meta.bytesused as usize).min(bytes.len());
        self.data.clear();
        self.data.extend_from_slice(&bytes[..used]);
        Ok(meta.sequence)
    }

    fn ready(&mut self) -> io::Result<bool> {
        Ok(self.dev.handle().poll(libc_pollin(), 0)? > 0)
    }

    fn data(&self) -> &[u8] {
        &self.data
    }

    fn choice(&self) -> Choice {
        self.choice
    }
}

/// POLLIN (the same value on every Linux architecture).
fn libc_pollin() -> i16 {
    0x001
}

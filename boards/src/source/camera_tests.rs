use std::collections::VecDeque;
use std::io;

use super::*;

fn want(format: PixelFormat, width: u32, height: u32, fps: u32) -> CameraConfig {
    CameraConfig { device: "/dev/video0".into(), width, height, fps, format }
}

fn offer(format: PixelFormat, width: u32, height: u32, fps: &[u32]) -> Offer {
    Offer { format, width, height, fps: fps.to_vec() }
}

/// A typical UVC webcam: YUYV only at 10 fps for the large size, MJPEG at 30 for all.
fn webcam() -> Vec<Offer> {
    vec![
        offer(PixelFormat::Yuyv, 640, 480, &[30, 15]),
        offer(PixelFormat::Yuyv, 1280, 720, &[10]),
        offer(PixelFormat::Mjpeg, 640, 480, &[30]),
        offer(PixelFormat::Mjpeg, 1280, 720, &[30]),
    ]
}

#[test]
fn auto_prefers_yuyv_when_it_comes_at_the_requested_size_and_rate() {
    let c = choose_format(&webcam(), &want(PixelFormat::Auto, 640, 480, 30));
    assert_eq!(c, Some(Choice { format: PixelFormat::Yuyv, width: 640, height: 480, fps: 30 }));
}

#[test]
fn auto_falls_back_to_mjpeg_when_yuyv_is_too_slow() {
    let c = choose_format(&webcam(), &want(PixelFormat::Auto, 1280, 720, 30));
    assert_eq!(c, Some(Choice { format: PixelFormat::Mjpeg, width: 1280, height: 720, fps: 30 }));
}

#[test]
fn an_unoffered_size_picks_the_nearest_area_and_rate() {
    let c = choose_format(&webcam(), &want(PixelFormat::Yuyv, 800, 600, 25));
    assert_eq!(c, Some(Choice { format: PixelFormat::Yuyv, width: 640, height: 480, fps: 30 }));
    assert_eq!(choose_format(&[], &want(PixelFormat::Auto, 640, 480, 30)), None);
}

/// A fake capture queue: frames arrive in `pending`; `dequeue` fails with `fail` once they run out.
struct FakeDevice {
    pending: VecDeque<(u32, Vec<u8>)>,
    data: Vec<u8>,
    fail: i32,
}

impl CaptureDevice for FakeDevice {
    fn dequeue(&mut self) -> io::Result<u32> {
        let (seq, data) = self.pending.pop_front().ok_or_else(|| io::Error::from_raw_os_error(self.fail))?;
        self.data = data;
        Ok(seq)
    }
    fn ready(&mut self) -> io::Result<bool> {
        Ok(!self.pending.is_empty())
    }
    fn data(&self) -> &[u8] {
        &self.data
    }
    fn choice(&self) -> Choice {
        Choice { format: PixelFormat::Yuyv, width: 2, height: 1, fps: 30 }
    }
}

/// One 2x1 YUYV frame whose luma encodes `seq`, so a test can tell frames apart after conversion.
fn frame(seq: u32) -> (u32, Vec<u8>) {
    (seq, vec![16 + seq as u8, 128, 16 + seq as u8, 128])
}

#[test]
fn newest_frame_policy_skips_everything_already_queued() {
    let mut dev = FakeDevice { pending: (1..=3).map(frame).collect(), data: vec![], fail: 11 };
    assert_eq!(take_newest(&mut dev).expect("frames queued"), (3, 2));
    dev.pending.push_back(frame(4));
    assert_eq!(take_newest(&mut dev).expect("one frame queued"), (4, 0));
}

#[test]
fn backoff_doubles_up_to_its_cap_and_resets() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
    let now = Instant::now();
    let waits: Vec<u128> = (0..4).map(|_| b.failed(now).as_millis()).collect();
    assert_eq!(waits, [100, 200, 350, 350]);
    assert_eq!(b.attempt(), 4);
    b.reset();
    assert_eq!(b.remaining(now), Duration::ZERO);
}

/// Opens fail while `refuse` > 0; each successful open yields a device with the next two frames.
struct FakeOpener {
    refuse: u32,
    opens: u32,
    next_seq: u32,
}

impl Opener for FakeOpener {
    type Device = FakeDevice;
    fn open(&mut self) -> io::Result<FakeDevice> {
        if self.refuse > 0 {
            self.refuse -= 1;
            return Err(io::Error::from_raw_os_error(2)); // ENOENT: not plugged back yet
        }
        self.opens += 1;
        let pending = (self.next_seq..self.next_seq + 2).map(frame).collect();
        self.next_seq += 2;
        Ok(FakeDevice { pending, data: vec![], fail: 19 })
    }
    fn name(&self) -> &str {
        "/dev/video-fake"
    }
}

#[test]
fn an_unplugged_camera_reports_lost_frames_then_reconnects() {
    let opener = FakeOpener { refuse: 0, opens: 0, next_seq: 1 };
    let mut cam = Camera::new(opener, Backoff::new(Duration::from_millis(1), Duration::from_millis(4)));
    // First open delivers frames 1 and 2 at once: the newest (2) comes out.
    let f = cam.next_frame().expect("frame").expect("camera never ends");
    assert_eq!((f.index, f.image.dimensions()), (2, (2, 1)));
    assert_eq!(cam.skipped, 1);
    // Queue empty, the device says ENODEV: a frame error naming the device, not the end.
    let err = cam.next_frame().expect_err("device gone");
    assert!(err.is_frame_error() && err.to_string().contains("/dev/video-fake") && err.to_string().contains("ENODEV"), "{err}");
    // Replugged later: two refused opens, then frames flow again.
    cam.opener.refuse = 2;
    for attempt in 2..=3 {
        let err = cam.next_frame().expect_err("still unplugged");
        assert!(err.to_string().contains(&format!("retry {attempt}")), "{err}");
    }
    let f = cam.next_frame().expect("reconnected").expect("frame");
    assert_eq!(f.index, 4);
    assert_eq!(cam.opener.opens, 2);
    assert_eq!(cam.backoff.attempt(), 0);
}

#[test]
fn a_short_buffer_is_a_frame_error_and_the_camera_goes_on() {
    let mut dev = FakeDevice { pending: VecDeque::from([(7, vec![1, 2])]), data: vec![], fail: 11 };
    dev.pending.push_back(frame(8));
    struct One(Option<FakeDevice>);
    impl Opener for One {
        type Device = FakeDevice;
        fn open(&mut self) -> io::Result<FakeDevice> {
            self.0.take().ok_or_else(|| io::Error::from_raw_os_error(19))
        }
        fn name(&self) -> &str {
            "fake"
        }
    }
    // Take them one at a time: make the second frame arrive after the first call.
    let second = dev.pending.pop_back();
    let mut cam = Camera::new(One(Some(dev)), Backoff::new(Duration::from_millis(1), Duration::from_millis(1)));
    let err = cam.next_frame().expect_err("2 bytes are not a 2x1 YUYV frame");
    assert!(matches!(err, Error::BadFrame { index: 7, .. }), "{err}");
    if let (Some(d), Some(f)) = (cam.device.as_mut(), second) {
        d.pending.push_back(f);
    }
    assert_eq!(cam.next_frame().expect("frame 8").map(|f| f.index), Some(8));
}

//! The kiosk's status line, drawn into the output frame with `embedded-graphics`: FPS, capture-to-display
//! latency and the tracking state, white on a black band at the top-left so it reads on any picture.

use std::convert::Infallible;

use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::mono_font::MonoTextStyleBuilder;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_graphics::text::{Baseline, Text};
use image::RgbImage;

/// A `DrawTarget` over an RGB frame; pixels outside the frame are dropped.
pub struct RgbTarget<'a>(pub &'a mut RgbImage);

impl OriginDimensions for RgbTarget<'_> {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for RgbTarget<'_> {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(&mut self, pixels: I) -> Result<(), Infallible> {
        let (w, h) = self.0.dimensions();
        for Pixel(p, c) in pixels {
            if let (Ok(x), Ok(y)) = (u32::try_from(p.x), u32::try_from(p.y)) {
                if x < w && y < h {
                    self.0.put_pixel(x, y, image::Rgb([c.r(), c.g(), c.b()]));
                }
            }
        }
        Ok(())
    }
}

/// What the status line shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OverlayStats {
    /// Displayed frames per second (recent average).
    pub fps: f64,
    /// Capture-to-display latency of the previous frame, milliseconds.
    pub latency_ms: f64,
    /// Tracker state, e.g. "face" or "no face".
    pub tracking: String,
}

impl OverlayStats {
    /// The text drawn.
    pub fn text(&self) -> String {
        format!("{:.1} fps  {:.0} ms  {}", self.fps, self.latency_ms, self.tracking)
    }
}

/// Top-left corner of the status line, pixels.
const ORIGIN: Point = Point::new(2, 2);

/// Draws the status line; returns the rectangle it covers (clipped to the frame), the only pixels changed.
pub fn draw_overlay(img: &mut RgbImage, stats: &OverlayStats) -> Rectangle {
    let style = MonoTextStyleBuilder::new().font(&FONT_6X10).text_color(Rgb888::WHITE).background_color(Rgb888::BLACK).build();
    let text = stats.text();
    let t = Text::with_baseline(&text, ORIGIN, style, Baseline::Top);
    let mut target = RgbTarget(img);
    let area = t.bounding_box().intersection(&target.bounding_box());
    let Ok(_) = t.draw(&mut target);
    area
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_changes_pixels_inside_the_text_box_and_nowhere_else() {
        let grey = image::Rgb([100, 120, 140]);
        let mut img = RgbImage::from_pixel(160, 40, grey);
        let stats = OverlayStats { fps: 29.97, latency_ms: 41.0, tracking: "no face".into() };
        let area = draw_overlay(&mut img, &stats);
        assert_eq!(area.top_left, ORIGIN);
        assert_eq!(area.size, Size::new(6 * stats.text().len() as u32, 10));
        let (mut white, mut black) = (0, 0);
        for (x, y, px) in img.enumerate_pixels() {
            if area.contains(Point::new(x as i32, y as i32)) {
                match px.0 {
                    [255, 255, 255] => white += 1,
                    [0, 0, 0] => black += 1,
                    other => panic!("pixel ({x},{y}) inside the text box is {other:?}, neither text nor band"),
                }
            } else {
                assert_eq!(*px, grey, "pixel ({x},{y}) outside the text box changed");
            }
        }
        // Glyph strokes cover roughly a fifth of a 6x10 cell: both colours must be well represented.
        assert!(white > 100 && black > 500, "white {white}, black {black}");
    }

    #[test]
    fn overlay_on_a_frame_smaller_than_the_text_is_clipped() {
        let mut img = RgbImage::new(20, 5);
        let area = draw_overlay(&mut img, &OverlayStats::default());
        assert_eq!(area.size, Size::new(18, 3));
    }
}

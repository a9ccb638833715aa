//! Board profiles and the kiosk configuration. [`KioskConfig`] is one type that is both a profile's
//! `[kiosk]` table (serde, unknown keys rejected by name) and the `gaga kiosk` flags (clap): a value given
//! on the command line overrides the profile's ([`KioskConfig::overridden_by`]). The shipped profiles are
//! compiled into the binary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::display::DisplaySpec;
use crate::error::{Error, Result};
use crate::source::PixelFormat;

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Cpu,
    Vulkan,
}

/// Arithmetic precision of the per-frame networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
}

/// A `WxH` size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Size, String> {
        let bad = || format!("size `{s}`: expected WxH with positive integers, e.g. 640x480");
        let (w, h) = s.split_once('x').ok_or_else(bad)?;
        match (w.parse(), h.parse()) {
            (Ok(width), Ok(height)) if width > 0 && height > 0 => Ok(Size { width, height }),
            _ => Err(bad()),
        }
    }
}
impl TryFrom<String> for Size {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Size, String> {
        s.parse()
    }
}
impl From<Size> for String {
    fn from(s: Size) -> String {
        s.to_string()
    }
}
impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl TryFrom<String> for DisplaySpec {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<DisplaySpec, String> {
        s.parse()
    }
}
impl From<DisplaySpec> for String {
    fn from(d: DisplaySpec) -> String {
        d.to_string()
    }
}

/// Kiosk settings: a profile's `[kiosk]` table and the `gaga kiosk` flags. Unset fields fall back to the
/// profile, then to the defaults of the accessors.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct KioskConfig {
    /// Where the model runs: cpu or vulkan.
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Precision of the per-frame networks: fp32, fp16 or int8.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Hard memory budget of the session, MiB (shared CPU/GPU memory on Jetson).
    #[arg(long)]
    pub memory_budget_mib: Option<u64>,
    /// Worker threads (0: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Camera device, e.g. /dev/video0.
    #[arg(long)]
    pub camera: Option<String>,
    /// Camera frame size, WxH.
    #[arg(long)]
    pub camera_size: Option<Size>,
    /// Camera frame rate.
    #[arg(long)]
    pub camera_fps: Option<u32>,
    /// Camera pixel format: auto, yuyv or mjpeg.
    #[arg(long, value_enum)]
    pub camera_format: Option<PixelFormat>,
    /// Where frames go: fb:/dev/fb0, fb:FILE:WxH:BPP, png:DIR, video:FILE.avi or http:[ADDR:]PORT.
    #[arg(long)]
    #[serde(with = "opt_display")]
    pub display: Option<DisplaySpec>,
}

/// `Option<DisplaySpec>` as an optional string.
mod opt_display {
    use super::DisplaySpec;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<DisplaySpec>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(ToString::to_string).serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DisplaySpec>, D::Error> {
        Option::<String>::deserialize(d)?.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
    }
}

impl KioskConfig {
    /// `self` with every field that `flags` sets replaced by the flag's value.
    pub fn overridden_by(&self, flags: &KioskConfig) -> KioskConfig {
        KioskConfig {
            backend: flags.backend.or(self.backend),
            precision: flags.precision.or(self.precision),
            memory_budget_mib: flags.memory_budget_mib.or(self.memory_budget_mib),
            threads: flags.threads.or(self.threads),
            camera: flags.camera.clone().or_else(|| self.camera.clone()),
            camera_size: flags.camera_size.or(self.camera_size),
            camera_fps: flags.camera_fps.or(self.camera_fps),
            camera_format: flags.camera_format.or(self.camera_format),
            display: flags.display.clone().or_else(|| self.display.clone()),
        }
    }

    /// The camera request, with defaults /dev/video0, 640x480, 30 fps, auto format.
    pub fn camera_config(&self) -> crate::source::CameraConfig {
        let size = self.camera_size.unwrap_or(Size { width: 640, height: 480 });
        crate::source::CameraConfig {
            device: self.camera.clone().unwrap_or_else(|| "/dev/video0".into()),
            width: size.width,
            height: size.height,
            fps: self.camera_fps.unwrap_or(30),
            format: self.camera_format.unwrap_or_default(),
        }
    }
}

/// A board profile: a name, a line of description and the kiosk settings for that board.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub kiosk: KioskConfig,
}

/// The shipped profiles: (file name, TOML text), compiled in.
pub const SHIPPED: &[(&str, &str)] = &[
    ("jetson-orin-nano.toml", include_str!("../profiles/jetson-orin-nano.toml")),
    ("jetson-agx-orin.toml", include_str!("../profiles/jetson-agx-orin.toml")),
    ("raspberry-pi-5.toml", include_str!("../profiles/raspberry-pi-5.toml")),
    ("x86-lavapipe.toml", include_str!("../profiles/x86-lavapipe.toml")),
    ("cpu-only.toml", include_str!("../profiles/cpu-only.toml")),
];

impl Profile {
    /// Parses one profile; `source_name` names it in errors (which carry toml's line, column and key).
    pub fn parse(source_name: &str, text: &str) -> Result<Profile> {
        toml::from_str(text)
            .map_err(|e| Error::Config { source_name: source_name.into(), what: e.to_string().trim_end().replace('\n', " ") })
    }
}

/// Every shipped profile, parsed.
pub fn shipped() -> Result<Vec<Profile>> {
    SHIPPED.iter().map(|(file, text)| Profile::parse(file, text)).collect()
}

/// The shipped profile called `name`; an unknown name is an error listing the known ones.
pub fn find(name: &str) -> Result<Profile> {
    let all = shipped()?;
    let known: Vec<String> = all.iter().map(|p| p.name.clone()).collect();
    all.into_iter().find(|p| p.name == name).ok_or_else(|| Error::Config {
        source_name: "--board".into(),
        what: format!("unknown board `{name}`; known boards: {}", known.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_parses_and_is_named_after_its_file() {
        for (file, text) in SHIPPED {
            let p = Profile::parse(file, text).expect(file);
            assert_eq!(format!("{}.toml", p.name), *file);
            assert!(p.kiosk.backend.is_some() && p.kiosk.display.is_some() && p.kiosk.camera_size.is_some(), "{file} leaves a field unset");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let text = "name = \"x\"\ndescription = \"y\"\n[kiosk]\nbackend = \"cpu\"\ncamera_sise = \"640x480\"\n";
        let err = Profile::parse("x.toml", text).expect_err("typo").to_string();
        assert!(err.contains("camera_sise") && err.contains("x.toml"), "{err}");
    }

    #[test]
    fn flags_override_the_profile_field_by_field() {
        let profile = find("cpu-only").expect("shipped").kiosk;
        let flags = KioskConfig { camera_fps: Some(15), display: Some("png:/tmp/x".parse().expect("spec")), ..Default::default() };
        let merged = profile.overridden_by(&flags);
        assert_eq!(merged.camera_fps, Some(15));
        assert_eq!(merged.display, flags.display);
        assert_eq!(merged.backend, profile.backend);
    }

    #[test]
    fn an_unknown_board_lists_the_known_ones() {
        let err = find("pi-zero").expect_err("not shipped").to_string();
        assert!(err.contains("pi-zero") && err.contains("jetson-orin-nano") && err.contains("cpu-only"), "{err}");
    }
}

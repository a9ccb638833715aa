//! What the kiosk shows when the face is lost: the last pose is held for [`HOLD`], then eased to the neutral
//! pose over [`EASE`] (smoothstep, so the avatar neither jumps nor stops abruptly). Brief drop-outs (a hand
//! across the face, a blink of the detector) are thus invisible, and a person who walks away leaves a calm
//! neutral avatar. Times come from the frames' capture instants, so the ease takes the same time at any FPS.

use std::time::{Duration, Instant};

use gaga_runtime::DrivingFrame;

use super::smooth::{rotation_from_6d, rotation_to_6d};

/// How long the last pose is held after the face is lost.
pub const HOLD: Duration = Duration::from_millis(1000);
/// How long the ease to neutral then takes.
pub const EASE: Duration = Duration::from_millis(1500);

/// Where the face-lost behaviour is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LostState {
    Face,
    Holding,
    /// Easing, with the fraction done in [0, 1].
    Easing(f32),
    Neutral,
}

impl LostState {
    /// The overlay's words.
    pub fn label(&self) -> String {
        match self {
            LostState::Face => "face".into(),
            LostState::Holding => "face lost: holding".into(),
            LostState::Easing(t) => format!("face lost: to neutral {:.0}%", t * 100.0),
            LostState::Neutral => "no face".into(),
        }
    }
}

/// Linear blend of two driving frames (`t` = 0 gives `a`, 1 gives `b`); the rotation blends in the 6D form
/// and is made a rotation again.
pub fn blend(a: &DrivingFrame, b: &DrivingFrame, t: f32) -> DrivingFrame {
    let mix = |x: f32, y: f32| x + (y - x) * t;
    let mut out = a.clone();
    for (o, (x, y)) in out.expcode.iter_mut().zip(a.expcode.iter().zip(&b.expcode)) {
        *o = mix(*x, *y);
    }
    out.posecode = std::array::from_fn(|i| mix(a.posecode[i], b.posecode[i]));
    out.eyecode = std::array::from_fn(|i| mix(a.eyecode[i], b.eyecode[i]));
    let (ra, rb) = (rotation_to_6d(&a.transform), rotation_to_6d(&b.transform));
    let rot = rotation_from_6d(&std::array::from_fn(|i| mix(ra[i], rb[i])));
    for (i, (row, r)) in out.transform.iter_mut().zip(rot).enumerate() {
        row[..3].copy_from_slice(&r);
        row[3] = mix(a.transform[i][3], b.transform[i][3]);
    }
    out.face = false;
    out
}

/// Keeps the last tracked pose and produces the pose to show.
#[derive(Clone, Debug)]
pub struct FaceLostEase {
    pub hold: Duration,
    pub ease: Duration,
    last: Option<(DrivingFrame, Instant)>,
}

impl Default for FaceLostEase {
    fn default() -> Self {
        FaceLostEase { hold: HOLD, ease: EASE, last: None }
    }
}

impl FaceLostEase {
    /// Holds for `hold`, then eases over `ease`.
    pub fn new(hold: Duration, ease: Duration) -> Self {
        FaceLostEase { hold, ease, last: None }
    }

    /// A face was tracked at `now`.
    pub fn face(&mut self, pose: DrivingFrame, now: Instant) -> DrivingFrame {
        self.last = Some((pose.clone(), now));
        pose
    }

    /// No face at `now`: the pose to show (`None`: the neutral pose itself, when `neutral` is unknown or the
    /// ease is over) and the state.
    pub fn lost(&mut self, now: Instant, neutral: Option<&DrivingFrame>) -> (Option<DrivingFrame>, LostState) {
        let Some((pose, since)) = &self.last else { return (None, LostState::Neutral) };
        let gone = now.saturating_duration_since(*since);
        if gone <= self.hold {
            let mut held = pose.clone();
            held.face = false;
            return (Some(held), LostState::Holding);
        }
        let t = ((gone - self.hold).as_secs_f32() / self.ease.as_secs_f32().max(1e-6)).min(1.0);
        match neutral {
            Some(n) if t < 1.0 => {
                let s = t * t * (3.0 - 2.0 * t);
                (Some(blend(pose, n, s)), LostState::Easing(t))
            }
            _ => {
                self.last = None;
                (None, LostState::Neutral)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pose(jaw: f32, yaw: f32) -> DrivingFrame {
        let (s, c) = yaw.sin_cos();
        DrivingFrame {
            key: "p".into(),
            expcode: vec![jaw; 4],
            posecode: [0.0, 0.0, 0.0, jaw, 0.0, 0.0],
            eyecode: [0.0; 6],
            transform: [[-c, 0.0, s, 0.0], [0.0, 1.0, 0.0, 0.0], [-s, 0.0, -c, 9.0]],
            shapecode: None,
            face: true,
        }
    }

    #[test]
    fn a_lost_face_is_held_then_eased_to_neutral_then_neutral() {
        let t0 = Instant::now();
        let (tracked, neutral) = (pose(0.4, 0.3), pose(0.0, 0.0));
        let mut e = FaceLostEase::default();
        e.face(tracked.clone(), t0);
        let (p, s) = e.lost(t0 + Duration::from_millis(900), Some(&neutral));
        assert_eq!((p.map(|p| p.posecode), s), (Some(tracked.posecode), LostState::Holding));
        // Half-way through the ease: smoothstep(0.5) = 0.5, so the jaw is half-way (f32: 1e-6).
        let (p, s) = e.lost(t0 + HOLD + EASE / 2, Some(&neutral));
        let p = p.expect("easing pose");
        assert_eq!(s, LostState::Easing(0.5));
        assert!((p.posecode[3] - 0.2).abs() < 1e-6 && !p.face);
        gaga_runtime::driving::check_rotation(&p.transform).expect("a rotation");
        let (p, s) = e.lost(t0 + HOLD + EASE, Some(&neutral));
        assert_eq!((p, s), (None, LostState::Neutral));
        assert_eq!(e.lost(t0 + HOLD, Some(&neutral)).1, LostState::Neutral);
    }

    #[test]
    fn without_a_neutral_pose_the_hold_ends_in_none() {
        let t0 = Instant::now();
        let mut e = FaceLostEase::default();
        assert_eq!(e.lost(t0, None), (None, LostState::Neutral));
        e.face(pose(0.1, 0.0), t0);
        assert_eq!(e.lost(t0 + HOLD + Duration::from_millis(1), None), (None, LostState::Neutral));
    }
}

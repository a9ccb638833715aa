//! One planned allocation for every activation map of a refiner run.
//!
//! Each intermediate map is a *buffer* with a length and a lifetime: the first and last step of the run's
//! schedule that touch it (`plan.rs` describes the schedule). [`Plan::place`] puts all buffers in one
//! arena so that two buffers alive at a common step never overlap: greedy in an order (largest area first,
//! then other orders while fragmentation remains), each at the lowest offset free of every already placed
//! buffer whose lifetime intersects its own. [`Plan::check`]
//! verifies that property independently of the placer, and [`carve`] hands out one step's buffers as
//! disjoint mutable slices (overlapping regions are an error, so aliasing cannot happen silently).

use crate::error::{Error, Result};

/// Region offsets are multiples of this many floats (64 bytes: a cache line, any SIMD width).
const ALIGN: usize = 16;

/// Most placement orders [`Plan::place`] tries from each start order that leaves fragmentation (the
/// refiner's ~150 buffers: about 20 ms at load per start order, once).
const CLIMB: usize = 8000;

/// Index of a buffer in its [`Schedule`].
pub type BufId = usize;

/// Where a buffer lives in the arena, in floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub offset: usize,
    pub len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Life {
    len: usize,
    first: usize,
    last: usize,
}

impl Life {
    fn meets(&self, o: &Life) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

/// Buffers and their lifetimes, recorded step by step in the order the run uses them.
#[derive(Default)]
pub struct Schedule {
    lives: Vec<Life>,
    step: usize,
    /// `(head, tail)`: `tail` starts where `head` ends, so the two read as one map while both live
    /// (the splat input, whose first planes become the first conv's output in place).
    glued: Vec<(BufId, BufId)>,
}

impl Schedule {
    /// Starts the next step.
    pub fn step(&mut self) {
        self.step += 1;
    }

    /// A buffer of `len` floats first written at the current step.
    pub fn buf(&mut self, len: usize) -> BufId {
        self.lives.push(Life { len, first: self.step, last: self.step });
        self.lives.len() - 1
    }

    /// Marks `id` as read or written at the current step.
    pub fn touch(&mut self, id: BufId) {
        if let Some(l) = self.lives.get_mut(id) {
            l.last = l.last.max(self.step);
        }
    }

    /// Places `tail` right after `head` (`head`'s length a multiple of 16 floats; else the two are
    /// placed independently and [`Plan::glued`] says they are not contiguous).
    pub fn glue(&mut self, head: BufId, tail: BufId) {
        if self.lives.get(head).is_some_and(|l| l.len % ALIGN == 0) && tail < self.lives.len() && head != tail {
            self.glued.push((head, tail));
        }
    }
}

/// Placed buffers. `shared = false` gives every buffer its own region (the layout before planning, kept
/// for tests that compare the two bitwise).
pub struct Plan {
    lives: Vec<Life>,
    regions: Vec<Region>,
    len: usize,
    glued: Vec<(BufId, BufId)>,
}

impl Plan {
    /// Places the buffers of `s` (see the module comment). Greedy placement in a start order, then, while
    /// the arena is above the busiest step's need (fragmentation), a deterministic hill climb over
    /// placement orders (swapping two buffers, keeping a swap that does not grow the arena; at most
    /// [`CLIMB`] tries). Start orders, until one meets the bound: largest area (length x steps alive) first,
    /// then largest first, then longest-lived first; the smallest arena wins. (On the official int8 plan
    /// with f16 maps, area first climbs to the bound, 33.75 MiB; largest first stopped at 36.19.)
    pub fn place(s: Schedule, shared: bool) -> Plan {
        let (lives, glued) = (s.lives, s.glued);
        // A glued tail is placed with its head (it is not in the order) and counts in its head's length.
        let units: Vec<BufId> = (0..lives.len()).filter(|i| !glued.iter().any(|g| g.1 == *i)).collect();
        let unit_len = |i: BufId| lives[i].len + glued.iter().filter(|g| g.0 == i).map(|g| lives[g.1].len).sum::<usize>();
        let steps = |i: BufId| lives[i].last - lives[i].first + 1;
        let bound = Self::live_per_step_of(&lives).into_iter().max().unwrap_or(0).next_multiple_of(ALIGN);
        let starts: [&dyn Fn(BufId) -> (usize, usize); 3] =
            [&|i| (unit_len(i) * steps(i), 0), &|i| (unit_len(i), 0), &|i| (steps(i), unit_len(i))];
        let mut best: Option<(Vec<Region>, usize)> = None;
        for key in starts {
            let mut order = units.clone();
            // Descending by key, ties by index: a fixed order for a given schedule.
            order.sort_by_key(|&i| (std::cmp::Reverse(key(i)), i));
            let placed = Self::climb(&lives, &glued, shared, order, bound);
            if best.as_ref().is_none_or(|b| placed.1 < b.1) {
                best = Some(placed);
            }
            if !shared || best.as_ref().is_some_and(|b| b.1 <= bound) {
                break;
            }
        }
        let (regions, len) = best.unwrap_or_default();
        Plan { lives, regions, len, glued }
    }

    /// Greedy placement in `order`, then the hill climb down towards `bound` (see [`Plan::place`]).
    fn climb(lives: &[Life], glued: &[(BufId, BufId)], shared: bool, mut order: Vec<BufId>, bound: usize) -> (Vec<Region>, usize) {
        let mut best = Self::place_in(lives, glued, shared, &order);
        let n = order.len();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |m: usize| {
            // xorshift64: a fixed sequence, so a schedule always gets the same plan.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % m as u64) as usize
        };
        for _ in 0..if shared && n > 1 { CLIMB } else { 0 } {
            if best.1 <= bound {
                break;
            }
            let (i, j) = (next(n), next(n));
            order.swap(i, j);
            let p = Self::place_in(lives, glued, shared, &order);
            if p.1 <= best.1 {
                best = p;
            } else {
                order.swap(i, j);
            }
        }
        best
    }

    /// Greedy placement in `order`: each buffer (with its glued tail, if any) at the lowest offset free
    /// of every placed buffer alive at a common step. Returns the regions and the arena length.
    fn place_in(lives: &[Life], glued: &[(BufId, BufId)], shared: bool, order: &[BufId]) -> (Vec<Region>, usize) {
        let mut regions = vec![Region { offset: 0, len: 0 }; lives.len()];
        let mut placed: Vec<BufId> = Vec::with_capacity(lives.len());
        let mut end = 0;
        for &id in order {
            // The unit placed at once: the buffer and its glued tail at their offsets within the unit.
            let mut unit = vec![(id, 0)];
            unit.extend(glued.iter().filter(|g| g.0 == id).map(|g| (g.1, lives[id].len)));
            let mut offset = 0;
            if shared {
                // Unit offsets `o` where member `m` (at `rel`, `len`) would overlap placed region `r`
                // alive with it: `o + rel + len > r.offset` and `o + rel < r.end`, i.e. `o` in
                // `(r.offset - rel - len, r.end - rel)`; sweep them by their lower end.
                let mut busy: Vec<(isize, usize)> = Vec::new();
                for &(m, rel) in &unit {
                    for &p in placed.iter().filter(|&&p| lives[p].meets(&lives[m])) {
                        let r = regions[p];
                        let lo = r.offset as isize - rel as isize - lives[m].len as isize;
                        let hi = (r.offset + r.len).next_multiple_of(ALIGN).saturating_sub(rel);
                        busy.push((lo, hi));
                    }
                }
                busy.sort_unstable();
                for (lo, hi) in busy {
                    if offset as isize <= lo {
                        break;
                    }
                    offset = offset.max(hi);
                }
            } else {
                offset = end;
            }
            for (m, rel) in unit {
                regions[m] = Region { offset: offset + rel, len: lives[m].len };
                end = end.max((offset + rel + lives[m].len).next_multiple_of(ALIGN));
                placed.push(m);
            }
        }
        (regions, end)
    }

    /// Whether `tail` was placed right after `head` (see [`Schedule::glue`]).
    pub fn glued(&self, head: BufId, tail: BufId) -> bool {
        let (h, t) = (self.region(head), self.region(tail));
        self.glued.contains(&(head, tail)) && h.offset + h.len == t.offset
    }

    /// Floats the arena needs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The region of buffer `id` (an empty one for an unknown id; `carve` then hands out an empty slice).
    pub fn region(&self, id: BufId) -> Region {
        self.regions.get(id).copied().unwrap_or(Region { offset: 0, len: 0 })
    }

    /// The most floats alive at any one step: no placement can use less arena than this.
    pub fn peak_live(&self) -> usize {
        self.live_per_step().into_iter().max().unwrap_or(0)
    }

    /// Floats alive at each step of the schedule (which steps are the peak, for reports and tests).
    pub fn live_per_step(&self) -> Vec<usize> {
        Self::live_per_step_of(&self.lives)
    }

    fn live_per_step_of(lives: &[Life]) -> Vec<usize> {
        let steps = lives.iter().map(|l| l.last + 1).max().unwrap_or(0);
        (0..steps).map(|t| lives.iter().filter(|l| l.first <= t && t <= l.last).map(|l| l.len).sum()).collect()
    }

    /// Checks that every region lies inside the arena and that no two buffers alive at a common step
    /// overlap (independent of how `place` found the offsets).
    pub fn check(&self) -> Result<()> {
        if let Some((h, t)) = self.glued.iter().find(|&&(h, t)| !self.glued(h, t)) {
            return Err(Error::Other(format!("refiner arena: buffer {t} is not placed right after buffer {h}, its glued head")));
        }
        for (i, (a, la)) in self.regions.iter().zip(&self.lives).enumerate() {
            if a.offset + a.len > self.len {
                return Err(Error::Other(format!("refiner arena: buffer {i} ends at {} past the arena's {}", a.offset + a.len, self.len)));
            }
            for (j, (b, lb)) in self.regions.iter().zip(&self.lives).enumerate().skip(i + 1) {
                let apart = a.offset + a.len <= b.offset || b.offset + b.len <= a.offset || a.len == 0 || b.len == 0;
                if la.meets(lb) && !apart {
                    return Err(Error::Other(format!(
                        "refiner arena: buffers {i} ({a:?}, steps {}..={}) and {j} ({b:?}, steps {}..={}) are alive together and overlap",
                        la.first, la.last, lb.first, lb.last
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Splits `arena` into the `N` regions as disjoint mutable slices, in the order given. Errors when two
/// regions overlap or one reaches past the arena. Allocates nothing.
pub fn carve<const N: usize>(arena: &mut [f32], regions: [Region; N]) -> Result<[&mut [f32]; N]> {
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    order.sort_unstable_by_key(|&i| regions[i].offset);
    let mut out: [&mut [f32]; N] = std::array::from_fn(|_| Default::default());
    let (mut rest, mut pos) = (arena, 0);
    for i in order {
        let r = regions[i];
        if r.len == 0 {
            // A buffer a plan left empty (a map computed on the fly): an empty slice, wherever it is.
            continue;
        }
        if r.offset < pos || r.offset + r.len > pos + rest.len() {
            return Err(Error::Other(format!(
                "refiner arena: region {i} at {}..{} overlaps an earlier one (free from {pos}) or passes the end ({})",
                r.offset,
                r.offset + r.len,
                pos + rest.len()
            )));
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.offset - pos);
        let (slice, tail) = tail.split_at_mut(r.len);
        out[i] = slice;
        rest = tail;
        pos = r.offset + r.len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Schedule {
        // a: steps 0-1, b: steps 1-2, c: step 2 only, so a and c may share.
        let mut s = Schedule::default();
        let a = s.buf(100);
        s.step();
        s.touch(a);
        let b = s.buf(50);
        s.step();
        s.touch(b);
        s.buf(80);
        s
    }

    #[test]
    fn buffers_with_disjoint_lifetimes_share_space_and_live_ones_do_not() {
        let p = Plan::place(three(), true);
        p.check().expect("valid plan");
        let overlap = |x: Region, y: Region| x.offset < y.offset + y.len && y.offset < x.offset + x.len;
        let (a, b, c) = (p.region(0), p.region(1), p.region(2));
        assert!(overlap(a, c), "a and c never live together, so they share space: {a:?} {c:?}");
        assert!(!overlap(a, b) && !overlap(b, c), "b lives with a and with c: {a:?} {b:?} {c:?}");
        // 100 + 50 (aligned to 16 -> 112 + 50 = 162 -> 176) is the peak; the plan needs no more.
        assert_eq!(p.peak_live(), 150);
        assert_eq!(p.len(), 176);
        let u = Plan::place(three(), false);
        u.check().expect("unshared plan is valid too");
        assert!(u.len() >= 230, "unshared layout gives every buffer its own space: {}", u.len());
    }

    #[test]
    fn a_glued_tail_follows_its_head_and_may_be_freed_before_it() {
        // head 32 floats (steps 0-1) + tail 32 (step 0 only), then at step 1 another 32-float buffer:
        // it reuses the tail's space, so the arena is 64 floats.
        let mut s = Schedule::default();
        let head = s.buf(32);
        let tail = s.buf(32);
        s.glue(head, tail);
        s.step();
        s.touch(head);
        let other = s.buf(32);
        for shared in [true, false] {
            let mut s2 = Schedule { lives: s.lives.clone(), step: s.step, glued: s.glued.clone() };
            s2.glue(head, head); // ignored: a buffer cannot follow itself
            let p = Plan::place(s2, shared);
            p.check().expect("valid");
            assert!(p.glued(head, tail), "shared {shared}: {:?} {:?}", p.region(head), p.region(tail));
            if shared {
                assert_eq!((p.len(), p.region(other).offset), (64, 32));
            }
        }
        let mut odd = Schedule::default();
        let (h, t) = (odd.buf(10), odd.buf(4));
        odd.glue(h, t);
        assert!(odd.glued.is_empty(), "a head of unaligned length is not glued");
    }

    #[test]
    fn check_rejects_live_buffers_that_overlap() {
        let mut p = Plan::place(three(), true);
        p.regions[1].offset = p.regions[0].offset;
        let e = p.check().expect_err("b now overlaps a");
        assert!(e.to_string().contains("buffers 0") && e.to_string().contains("and 1"), "{e}");
    }

    #[test]
    fn carve_returns_disjoint_slices_in_request_order_and_rejects_overlap() {
        let mut arena: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let [x, y] = carve(&mut arena, [Region { offset: 32, len: 4 }, Region { offset: 0, len: 2 }]).expect("disjoint");
        assert_eq!((x[0], x.len(), y[1], y.len()), (32.0, 4, 1.0, 2));
        let e = carve(&mut arena, [Region { offset: 0, len: 8 }, Region { offset: 4, len: 8 }]).expect_err("overlap");
        assert!(e.to_string().contains("region 1"), "{e}");
        assert!(carve(&mut arena, [Region { offset: 60, len: 8 }]).is_err(), "past the end");
        let [e, z] =
            carve(&mut arena, [Region { offset: 0, len: 8 }, Region { offset: 4, len: 0 }]).expect("empty regions overlap nothing");
        assert_eq!((e.len(), z.len()), (8, 0));
    }
}

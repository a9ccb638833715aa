//! The choices a refiner plan is made of: which of an int8 level's maps are computed on the fly or kept in
//! f16 ([`OnTheFly`], per level), what a session asks for ([`MapMemory`], `GAGA_INT8_MAPS`), and how the
//! encoder's full-size steps save memory ([`Encoder`]). `plan.rs` turns them into buffers and steps.

use crate::error::{Error, Result};

/// Which of a decoder level's maps an int8 refiner never stores in f32 (each is computed while it is
/// quantised, or in place). Every path gives the same bits as storing the map; the default stores all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnTheFly {
    /// The up ResBlock's upsampled temporary `t2` (conv2's and the skip's inputs, quantised straight from
    /// the low-resolution maps with unit factors: `PackedConv::run_upsampled`).
    pub up_block: bool,
    /// The first StyleConv's upsampled, modulated input `din_up` (`PackedConv::run_upsampled`).
    pub up_input: bool,
    /// With `up_input`, that conv also runs in row bands of [`UP_BAND_ROWS`](super::UP_BAND_ROWS) (`PackedConv::
    /// run_upsampled_rows`), each band's output in the `up_band` buffer, so the kernels' scratch holds one
    /// band's quantised input instead of the whole map's.
    pub up_bands: bool,
    /// The SFT condition's output-size map `cond_x`: its second convs run in row bands of
    /// [`COND_BAND_ROWS`](super::COND_BAND_ROWS), so `cond_x` holds one band's input and output.
    pub cond_bands: bool,
    /// With `up_block`, conv2 and the skip run in row bands of [`UP_BAND_ROWS`](super::UP_BAND_ROWS) (`PackedConv::
    /// run_upsampled_rows`, each band's output in `block_band`; the skip's band summed into the output at
    /// once, so `t1` holds only conv1's output): the kernels' scratch holds one band's quantised input.
    pub block_bands: bool,
    /// The second StyleConv's modulated input `din2` (`PackedConv::run_scaled`).
    pub mod_input: bool,
    /// With `mod_input`, that conv runs in row bands of [`UP_BAND_ROWS`](super::UP_BAND_ROWS) (`PackedConv::run_rows`, each
    /// band's output in `mod_band`).
    pub mod_bands: bool,
    /// ToRGB's modulated input `din3`: the level's decoder output is modulated in place (only when
    /// nothing reads it later, i.e. the last level: [`settle_half`] enforces it).
    pub rgb_in_place: bool,
    /// ToRGB runs band by band (no `din3` either), its input left as it is (`ToRgb::run_banded`:
    /// an int8 one quantises `x * s` a band at a time, a float one modulates a band into `rgb_band`).
    pub rgb_bands: bool,
    /// The level's two StyleConv outputs (`e`, `dec`) and SFT hidden map (`cond_t`) are stored in f16
    /// (`maps.rs`; each written a band at a time after its epilogue, read only by int8 convs quantising
    /// it on the fly): half their bytes, for values rounded once to the nearest half. Needs every one
    /// of the level's convs banded (and the SFT's first conv int8 too), and the next level's first
    /// StyleConv banded (it reads `dec`).
    pub half: bool,
    /// With `half`, the UNet feature `feat` too (the last level's, which only the SFT reads).
    pub half_feat: bool,
}

/// How many of an int8 refiner's maps are computed on the fly instead of stored as f32. `Stored`,
/// `Upsampled` and `Lean` give the same bits and trade arena memory for time (official size,
/// `docs/performance.md`, "Lean int8 maps, session 6"); `Half` also rounds the largest stored maps to f16.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MapMemory {
    /// Every map stored (the layout before on-the-fly quantisation; A/B and escape hatch).
    Stored,
    /// Only each level's upsampled, modulated StyleConv input (`up_input`): official arena 96.75 MiB
    /// (session 4's plan; A/B).
    Upsampled,
    /// Every map that can be ([`OnTheFly`]): official arena 65.75 MiB and kernel scratch 8.3 MiB (16.2
    /// with `Upsampled`), at the same refine time as `Upsampled` within noise since session 6's
    /// vectorised on-the-fly quantiser and halo-reading bands.
    Lean,
    /// `Lean` with the last two levels' largest maps in f16 ([`OnTheFly::half`]): official arena 41.75
    /// MiB. Not bitwise `Lean` (each of those maps is rounded once to the nearest half, far below the
    /// int8 quantisation step); the default.
    #[default]
    Half,
}

impl MapMemory {
    /// The environment's choice: `GAGA_INT8_MAPS=stored|upsampled|lean|half` (unset: [`MapMemory::Half`]).
    pub fn from_env() -> Result<MapMemory> {
        match std::env::var("GAGA_INT8_MAPS") {
            Err(_) => Ok(MapMemory::default()),
            Ok(v) => [MapMemory::Stored, MapMemory::Upsampled, MapMemory::Lean, MapMemory::Half]
                .into_iter()
                .find(|m| m.name() == v)
                .ok_or_else(|| Error::Other(format!("GAGA_INT8_MAPS={v}: expected stored, upsampled, lean or half"))),
        }
    }

    /// The mode's `GAGA_INT8_MAPS` value.
    pub fn name(self) -> &'static str {
        match self {
            MapMemory::Stored => "stored",
            MapMemory::Upsampled => "upsampled",
            MapMemory::Lean => "lean",
            MapMemory::Half => "half",
        }
    }

    /// `fly` (everything level `k` of `levels` could do, [`OnTheFly::int8`] cut down to its convs) cut
    /// down to what this mode allows. `Lean` bands the second StyleConv and ToRGB only at the last level
    /// (`Half` also one level before, for its f16 maps).
    pub fn restrict(self, fly: OnTheFly, k: usize, levels: usize) -> OnTheFly {
        let last = k + 1 == levels;
        match self {
            MapMemory::Stored => OnTheFly::default(),
            MapMemory::Upsampled => OnTheFly { up_input: fly.up_input, ..OnTheFly::default() },
            MapMemory::Lean => OnTheFly {
                up_bands: fly.up_bands && k + 2 >= levels,
                block_bands: fly.block_bands && last,
                mod_bands: fly.mod_bands && last,
                rgb_in_place: fly.rgb_in_place && last,
                rgb_bands: fly.rgb_bands && last,
                half: false,
                half_feat: false,
                ..fly
            },
            MapMemory::Half => fly,
        }
    }
}

impl OnTheFly {
    /// Every map of level `k` of `levels` all-int8 ones computed on the fly (ToRGB in place or banded at
    /// the last two). Banding pays where the quantised inputs are the largest kernel scratch (every
    /// banded conv of the last level, the first StyleConv of the two before: their 128- and 256-channel
    /// upsampled inputs, 2.7 MiB of scratch at official size instead of 4.6) and where f16 maps
    /// ([`OnTheFly::half`]: the last two levels) need each band stored. `Lean` keeps session 6's bands.
    pub fn int8(k: usize, levels: usize) -> OnTheFly {
        let (last, late) = (k + 1 == levels, k + 2 >= levels);
        OnTheFly {
            up_block: true,
            block_bands: late,
            up_input: true,
            up_bands: k + 3 >= levels,
            cond_bands: true,
            mod_input: true,
            mod_bands: late,
            rgb_in_place: last,
            // Banded ToRGB leaves its input as it is, so the level before the last may band it too.
            rgb_bands: late,
            half: late,
            half_feat: last,
        }
    }
}

/// `fly` with [`OnTheFly::half`] kept only where the next level's first StyleConv can read an f16 `dec`
/// (it runs banded: `up_input` and `up_bands`), [`OnTheFly::half_feat`] only at the last level, with
/// `half` and a banded up block, and [`OnTheFly::rgb_in_place`] only at the last level.
pub fn settle_half(mut fly: Vec<OnTheFly>) -> Vec<OnTheFly> {
    let levels = fly.len();
    for k in 0..levels {
        let next_reads_f16 = fly.get(k + 1).is_none_or(|n| n.up_input && n.up_bands);
        let f = &mut fly[k];
        f.half &= next_reads_f16;
        // Modulating `dec` in place destroys it: only the last level's is read by nothing later.
        f.rgb_in_place &= k + 1 == levels;
        // The next level's up block reads `feat` as f32: only the last level's may be f16.
        f.half_feat &= f.half && f.up_block && f.block_bands && k + 1 == levels;
    }
    fly
}

/// How the encoder's full-size steps save memory (an int8 refiner with f16 maps, [`MapMemory::Half`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoder {
    /// The first conv (1x1) runs in row bands of [`UP_BAND_ROWS`](super::UP_BAND_ROWS) and writes its output over the
    /// splat input's first planes (each band's input rows are read before its output replaces them, and
    /// no later band reads those rows), so the input's remaining planes are free once it has run.
    pub first_in_place: bool,
    /// The first down block's conv1 (int8) runs in row bands, each band downsampled at once, and its skip
    /// in row bands summed into the output at once, so neither full-size output map exists.
    pub down_bands: bool,
}

impl Encoder {
    /// What mode `mode` plans for an encoder whose first conv is 1x1 with no more outputs than inputs and
    /// whose first down block's conv1 is int8.
    pub fn for_mode(mode: MapMemory) -> Encoder {
        let on = mode == MapMemory::Half;
        Encoder { first_in_place: on, down_bands: on }
    }
}

//! Where the on-the-fly int8 inputs lose time against stored maps (ignored; numbers in docs/performance.md,
//! "Lean int8 maps, session 6"). Each official last-level layer that `GAGA_INT8_MAPS=lean` computes on the
//! fly, split into its passes (range of the dynamic quantiser, quantise-and-interleave, whole call), the stored form against
//! the on-the-fly one alternating call by call on one thread, minima of `GAGA_LEAN_REPS` (default 9):
//! `cargo test --release -p gaga-kernels lean_passes -- --ignored --nocapture --test-threads=1`

use super::super::conv::{output_geometry, quantise_map};
use super::{fill_map, source_act_quant, Scaled, Source, Up};
use crate::fused::{bilinear_scaled, scale_channels};
use crate::qgemm::{act_quant_for, PackedConv, QIsa};
use crate::scratch::Scratch;
use crate::testing::seeded;
use std::time::Instant;

/// Milliseconds of `f`.
fn ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

/// Minima of the stored (`a`) and on-the-fly (`b`) forms, alternating.
fn ab(reps: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let (mut ta, mut tb) = (f64::MAX, f64::MAX);
    for _ in 0..reps {
        ta = ta.min(ms(&mut a));
        tb = tb.min(ms(&mut b));
    }
    (ta, tb)
}

/// One layer: the source, its materialised map, and the conv that reads it.
fn layer<S: Source>(name: &str, reps: usize, src: S, map: &[f32], pc: &PackedConv, materialise: impl Fn(&mut [f32])) {
    let (c, h, w) = src.dims();
    let isa = QIsa::detect();
    let mut out = vec![0f32; pc.c_out * h * w];
    let g = output_geometry(pc, h, w, None, &out).expect("geometry");
    let mut q = vec![0u8; (g.cg * g.stride + 64) * 4];
    let s = act_quant_for(map);
    assert_eq!(s, source_act_quant(src), "{name}: scales differ");
    let (sa, sb) = ab(
        reps,
        || {
            std::hint::black_box(act_quant_for(map));
        },
        || {
            std::hint::black_box(source_act_quant(src));
        },
    );
    let mut q2 = q.clone();
    let (qa, qb) = ab(reps, || quantise_map(map, c, h, w, &g, s, isa.offset(), &mut q), || fill_map(src, &g, s, isa.offset(), &mut q2));
    assert!(q == q2, "{name}: quantised maps differ");
    let mut tmp = vec![0f32; map.len()];
    let (mut sc1, mut sc2) = (Scratch::new(), Scratch::new());
    let mut out2 = out.clone();
    let (ca, cb) = ab(
        reps,
        || {
            materialise(&mut tmp);
            pc.run(&mut sc1, &tmp, h, w, None, None, &mut out).expect("stored");
        },
        || run_fly(pc, &mut sc2, src, &mut out2),
    );
    assert!(out.iter().zip(&out2).all(|(a, b)| a.to_bits() == b.to_bits()), "{name}: outputs differ");
    eprintln!(
        "{name:<34} scale {sa:6.2} / {sb:6.2} ({:.2}x)  quantise {qa:6.2} / {qb:6.2} ({:.2}x)  call {ca:6.2} / {cb:6.2} ({:.3}x)",
        sb / sa,
        qb / qa,
        cb / ca
    );
}

/// The on-the-fly call for `src` (dynamic scale).
fn run_fly<S: Source>(pc: &PackedConv, sc: &mut Scratch, src: S, out: &mut [f32]) {
    let (c, h, w) = src.dims();
    let isa = QIsa::detect();
    let scale = || source_act_quant(src);
    super::super::conv::run_i8_with(isa, pc, sc, h, w, None, out, scale, |g, s, m| fill_map(src, g, s, isa.offset(), m)).expect("fly");
    let _ = c;
}

#[test]
#[ignore = "timing; run by hand (command in the module doc)"]
fn lean_passes() {
    let reps = std::env::var("GAGA_LEAN_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(9);
    let threads = std::env::var("GAGA_LEAN_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    pool.install(|| {
        let hl = 256;
        let h = 2 * hl;
        let conv =
            |seed, ci: usize, co: usize, k: usize| PackedConv::from_f32_as_i8(&seeded(seed, co * ci * k * k), co, ci, k).expect("pack");
        // Up block conv2 (3x3 32 -> 16) and skip (1x1): up2(x) * 1.
        let x32 = seeded(1, 32 * hl * hl);
        let ones = vec![1f32; 64];
        let up = Up { x: &x32, c: 32, hl, wl: hl, s: &ones[..32] };
        let mat = |o: &mut [f32]| bilinear_scaled(&x32, 32, hl, hl, h, h, &ones[..32], o);
        let mut map = vec![0f32; 32 * h * h];
        mat(&mut map);
        layer("up block conv2 3x3 32->16 @512", reps, up, &map, &conv(2, 32, 16, 3), mat);
        layer("up block skip 1x1 32->16 @512", reps, up, &map, &conv(3, 32, 16, 1), mat);
        // First StyleConv (3x3 64 -> 32): up2(x) * s, whole map and one 18-row band.
        let x64 = seeded(4, 64 * hl * hl);
        let s64: Vec<f32> = seeded(5, 64).iter().map(|v| 0.5 + v.abs()).collect();
        let up = Up { x: &x64, c: 64, hl, wl: hl, s: &s64 };
        let mat = |o: &mut [f32]| bilinear_scaled(&x64, 64, hl, hl, h, h, &s64, o);
        let mut map = vec![0f32; 64 * h * h];
        mat(&mut map);
        let pc = conv(6, 64, 32, 3);
        layer("1st StyleConv 3x3 64->32 @512", reps, up, &map, &pc, mat);
        // One band of 16 output rows: session 5 ran 18 rows (the halo as rows of a map of its own, their
        // outputs dropped) from a copy; a `Band` reads its halo rows and computes only its own 16.
        let cut = |o: &mut [f32]| {
            for ch in 0..64 {
                o[ch * 18 * h..(ch + 1) * 18 * h].copy_from_slice(&map[(ch * h + 100) * h..(ch * h + 118) * h]);
            }
        };
        let s = act_quant_for(&map);
        let (mut bmap, mut o18, mut o16) = (vec![0f32; 64 * 18 * h], vec![0f32; 32 * 18 * h], vec![0f32; 32 * 16 * h]);
        let (mut sc1, mut sc2) = (Scratch::new(), Scratch::new());
        let (ta, tb) = ab(
            reps,
            || {
                cut(&mut bmap);
                pc.run(&mut sc1, &bmap, 18, h, Some(s), None, &mut o18).expect("18 rows");
            },
            || pc.run_upsampled_rows(&mut sc2, &x64, hl, hl, &s64, s, (101, 16), None, &mut o16).expect("band"),
        );
        assert!(o18[h..17 * h] == o16[..16 * h], "band rows differ");
        eprintln!("1st StyleConv, one band: 18 rows copied {ta:6.2} ms, 16-row band with halo {tb:6.2} ms ({:.3}x)", tb / ta);
        // Second StyleConv (3x3 32 -> 32): x * s.
        let x = seeded(7, 32 * h * h);
        let s32: Vec<f32> = seeded(8, 32).iter().map(|v| 0.5 + v.abs()).collect();
        let src = Scaled { x: &x, c: 32, h, w: h, s: Some(&s32) };
        let mat = |o: &mut [f32]| scale_channels(&x, &s32, h * h, o);
        let mut map = vec![0f32; 32 * h * h];
        mat(&mut map);
        layer("2nd StyleConv 3x3 32->32 @512", reps, src, &map, &conv(9, 32, 32, 3), mat);
    });
}

//! The 32-channel Gaussian splatter on a synthetic head at GAGAvatar's size: 5,023 vertex Gaussians on a
//! sphere plus two 296x296 lifting planes (180,255 Gaussians), 512x512, frontal tracked camera.
//!
//! `cargo bench -p gaga-benches --bench splat` prints the scene's counts (visible Gaussians, tile-Gaussian
//! pairs), then times: the whole splat, preprocessing + binning alone, and the fast path against the
//! per-pixel reference on a small scene (64x64, 2,000 Gaussians: the reference is quadratic).
//! Threads: rayon's default pool (`RAYON_NUM_THREADS` applies).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use gaga_kernels::splat::synthetic::{SyntheticHead, FRONTAL};
use gaga_kernels::splat::{reference, splat, splat_stats, SplatCamera, SplatScratch, CHANNELS};

fn bench_splat(c: &mut Criterion) {
    // GAGAvatar: 5,023 FLAME vertices, 296^2 plane Gaussians twice, 512^2 output, 32 channels.
    let head = SyntheticHead::new(5023, 296, CHANNELS, 1);
    let set = head.set();
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 512, 512);
    let bg = [0f32; CHANNELS];
    let mut out = vec![0f32; CHANNELS * 512 * 512];
    let mut scratch = SplatScratch::new();
    let stats = splat(&set, &cam, &bg, &mut out, &mut scratch);
    println!(
        "splat scene: {} Gaussians, {} visible, {} tile-Gaussian pairs ({:.0} per tile), {} threads, scratch {:.1} MiB",
        set.len(),
        stats.visible,
        stats.pairs,
        stats.pairs as f64 / 1024.0,
        rayon::current_num_threads(),
        scratch.capacity_bytes() as f64 / (1 << 20) as f64
    );

    let mut group = c.benchmark_group("splat");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(set.len() as u64));
    group.bench_function("frame 512x512x32, 180255 Gaussians", |b| b.iter(|| splat(black_box(&set), &cam, &bg, &mut out, &mut scratch)));
    group.bench_function("preprocess+binning only", |b| b.iter(|| splat_stats(black_box(&set), &cam, &mut scratch)));

    // Fast vs reference on a scene the reference can finish: a 32x32-plane head at 64x64.
    let small = SyntheticHead::new(400, 32, CHANNELS, 2);
    let small_set = small.set();
    let small_cam = SplatCamera::from_transform(&FRONTAL, 12.0, 64, 64);
    let mut small_out = vec![0f32; CHANNELS * 64 * 64];
    group.throughput(Throughput::Elements(small_set.len() as u64));
    group.bench_function("small 64x64, 2448 Gaussians: fast", |b| {
        b.iter(|| splat(black_box(&small_set), &small_cam, &bg, &mut small_out, &mut scratch))
    });
    group.bench_function("small 64x64, 2448 Gaussians: reference", |b| {
        b.iter(|| reference::splat(black_box(&small_set), &small_cam, &bg, &mut small_out))
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_splat(&mut c);
    c.final_summary();
}

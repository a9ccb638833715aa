//! Benchmark support code (inputs at GAGAvatar shapes); the benches are in `benches/benches/`.

//! Seeded checkpoints in the official `GAGAvatar.pt` container: `{'model': state_dict, 'meta_cfg': {...}}`
//! with the state dict an `OrderedDict` carrying `_metadata`, every tensor f32, written by streaming each
//! tensor's values from its seeded stream straight into the archive.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use gaga_runtime::{Error, ModelConfig, Result, WeightMap};

use super::init::ParamSpec;
use super::layout::checkpoint_specs;
use super::pickle::Py;
use super::rng::TensorRng;
use super::torch_zip::{tensor_ref, write_torch_archive, DType};

/// Values generated and written per step: 64 K floats (256 KB) keeps memory flat for any tensor size.
const CHUNK: usize = 1 << 16;

fn dict(items: Vec<(&str, Py)>) -> Py {
    Py::Dict(items.into_iter().map(|(k, v)| (Py::str(k), v)).collect())
}

/// The `meta_cfg` the official training config would store (spec section 8.1); inference reads only
/// `MODEL.NAME` and `DATASET.POINT_PLANE_SIZE`. `TRAIN.EXP_STR` records how the file was made.
pub fn meta_cfg(cfg: &ModelConfig, seed: u64, config_name: &str) -> Py {
    dict(vec![
        ("MODEL", dict(vec![("NAME", Py::str("GAGAvatar")), ("TASK", Py::str("DynamicGaussian"))])),
        (
            "OPTIMIZE",
            dict(vec![
                ("NAME", Py::str("Adam")),
                ("LEARNING_RATE", Py::Float(1e-4)),
                ("LR_DECAY_RATE", Py::Float(0.1)),
                ("LR_DECAY_ITER", Py::Int(200_000)),
            ]),
        ),
        (
            "TRAIN",
            dict(vec![
                ("BATCH_SIZE", Py::Int(8)),
                ("TRAIN_ITER", Py::Int(200_000)),
                ("CHECK_INTERVAL", Py::Int(10_000)),
                ("EXP_STR", Py::Str(format!("gaga-dev-seeded config={config_name} seed={seed}"))),
                ("TIME_STR", Py::str("seeded")),
            ]),
        ),
        (
            "DATASET",
            dict(vec![
                ("NAME", Py::str("VFHQ")),
                ("LOADER", Py::str("TrackedData")),
                ("FLAME_SCALE", Py::Float(cfg.flame.scale as f64)),
                ("FOCAL_LENGTH", Py::Float(cfg.focal as f64)),
                ("POINT_PLANE_SIZE", Py::Int(cfg.plane_size as i64)),
                ("PATH", Py::str("")),
            ]),
        ),
    ])
}

/// `state_dict()._metadata`: one `{'version': 1}` per module prefix ('' first, parents before
/// children). Modules without tensors (activations) are not listed, unlike torch's; loaders only read
/// versions of modules they know.
fn state_dict_metadata<'a>(names: impl Iterator<Item = &'a str>) -> Py {
    let mut prefixes: Vec<String> = vec![String::new()];
    for name in names {
        let parts: Vec<&str> = name.split('.').collect();
        for n in 1..parts.len() {
            let prefix = parts[..n].join(".");
            if !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
    }
    let version = || Py::Dict(vec![(Py::str("version"), Py::Int(1))]);
    Py::ordered_dict(prefixes.into_iter().map(|p| (Py::Str(p), version())).collect(), None)
}

/// The pickled top-level object of a checkpoint whose tensor `n` is storage `n`.
fn checkpoint_object(specs: &[ParamSpec], meta: Py) -> Py {
    let items = specs.iter().enumerate().map(|(n, s)| (Py::str(&s.name), tensor_ref(n, DType::F32, &s.shape))).collect();
    let attrs = dict(vec![("_metadata", state_dict_metadata(specs.iter().map(|s| s.name.as_str())))]);
    dict(vec![("model", Py::ordered_dict(items, Some(attrs))), ("meta_cfg", meta)])
}

fn stream_values(spec: &ParamSpec, seed: u64, out: &mut impl Write) -> io::Result<()> {
    let numel = spec.numel();
    let mut rng = TensorRng::new(seed, &spec.name);
    let mut values = vec![0f32; CHUNK.min(numel)];
    let mut bytes = Vec::with_capacity(values.len() * 4);
    let mut start = 0;
    while start < numel {
        let chunk = &mut values[..CHUNK.min(numel - start)];
        spec.init.fill(&mut rng, numel, start, chunk);
        bytes.clear();
        bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
        out.write_all(&bytes)?;
        start += chunk.len();
    }
    Ok(())
}

/// Writes a seeded checkpoint for `cfg` to `out`; `config_name` is recorded in `meta_cfg`.
pub fn write_checkpoint<W: Write>(out: W, cfg: &ModelConfig, config_name: &str, seed: u64) -> io::Result<W> {
    let specs = checkpoint_specs(cfg);
    let top = checkpoint_object(&specs, meta_cfg(cfg, seed, config_name));
    write_torch_archive(out, &top, specs.len(), |n, w| stream_values(&specs[n], seed, w))
}

/// Writes a seeded checkpoint file; returns the number of tensors written.
pub fn write_checkpoint_file(path: &Path, cfg: &ModelConfig, config_name: &str, seed: u64) -> Result<usize> {
    let io_err = |source| Error::Io { path: path.to_path_buf(), source };
    let file = File::create(path).map_err(io_err)?;
    let out = write_checkpoint(BufWriter::with_capacity(1 << 20, file), cfg, config_name, seed).map_err(io_err)?;
    out.into_inner().map_err(|e| io_err(e.into_error()))?.sync_all().map_err(io_err)?;
    Ok(checkpoint_specs(cfg).len())
}

/// The same seeded values in memory, by official state-dict name (what the file holds, without the file).
pub fn seeded_weights(cfg: &ModelConfig, seed: u64) -> WeightMap {
    let mut map = WeightMap::default();
    for spec in checkpoint_specs(cfg) {
        let values = spec.values(seed);
        map.insert(spec.name, spec.shape, values);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_values_equal_in_memory_values() {
        let spec =
            ParamSpec { name: "x".into(), shape: vec![3, CHUNK / 2 + 5], init: super::super::init::Init::Normal { mean: 0.0, std: 1.0 } };
        let mut bytes = Vec::new();
        stream_values(&spec, 4, &mut bytes).expect("write to memory");
        let streamed: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_eq!(streamed, spec.values(4));
    }

    #[test]
    fn metadata_lists_parents_before_children() {
        let Py::Reduce { items, .. } = state_dict_metadata(["a.b.weight", "a.c.bias", "d"].into_iter()) else {
            panic!("not an OrderedDict")
        };
        let keys: Vec<Py> = items.into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![Py::str(""), Py::str("a"), Py::str("a.b"), Py::str("a.c")]);
    }
}

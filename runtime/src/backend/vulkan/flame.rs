//! FLAME on the GPU (`flame_lbs.comp`): per vertex, expression blendshapes and pose correctives on the
//! identity mesh, then skinning and the FLAME scale, written into rows `0..V` of the splat's positions.
//!
//! The tiny parts stay on the host (`FlameHost`), as the CPU does them: per source the identity mesh
//! `v_template + shapedirs[.., ..S] . shape` and its joints; per frame the joints (`J_identity +
//! (J_regressor . expression dirs) . expcode`, the product precomputed at load, so joints follow the
//! expression exactly like `lbs.py`), Rodrigues, the pose feature and the kinematic chain. They reach the
//! shader through one host-visible `params` buffer: `[expcode E | pose feature P | transforms J x 3 x 4]`.

// Fixed-size 3x4 matrix code reads better with explicit indices (as in `crate::flame`).
#![allow(clippy::needless_range_loop)]

use std::borrow::Cow;

use gaga_kernels::twin::flame::{self as twin, FlamePush};

use super::command::Dispatch;
use super::memory::{Buffer, MemoryLocation};
use super::pipeline::ComputePipeline;
use super::weights::{planned_bytes, DeviceWeight, WeightUpload};
use super::Gpu;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::flame::rodrigues;
use crate::types::DrivingFrame;
use crate::weights::Weights;

/// A 3x4 rigid transform `[R | t]`, row-major (the layout the shader reads).
type Rigid = [[f32; 4]; 3];

fn compose(a: &Rigid, b: &Rigid) -> Rigid {
    let mut out = [[0f32; 4]; 3];
    for i in 0..3 {
        for j in 0..4 {
            let mut v: f32 = (0..3).map(|k| a[i][k] * b[k][j]).sum();
            if j == 3 {
                v += a[i][3];
            }
            out[i][j] = v;
        }
    }
    out
}

/// The host side of GPU FLAME: identity and joints per source, joint transforms per frame.
pub struct FlameHost<'w> {
    push: FlamePush,
    shape_n: usize,
    v_template: Cow<'w, [f32]>,
    shapedirs: Cow<'w, [f32]>,
    j_regressor: Cow<'w, [f32]>,
    parents: Vec<usize>,
    /// `J_regressor . shapedirs[.., E]`: `[J, 3, E]`.
    jreg_expr: Vec<f32>,
    shapecode: Option<Vec<f32>>,
    v_identity: Vec<f32>,
    j_identity: Vec<[f32; 3]>,
    /// The per-frame `params` buffer's contents.
    params: Vec<f32>,
}

fn input_error(field: &str, frame: &str, what: String) -> Error {
    Error::Input { source_name: "FLAME input".into(), frame: frame.into(), field: field.into(), what }
}

impl<'w> FlameHost<'w> {
    /// Reads and checks the FLAME arrays and precomputes `J_regressor . expression dirs`.
    pub fn new(w: &'w dyn Weights, cfg: &ModelConfig) -> Result<Self> {
        let f = &cfg.flame;
        let (v, j, e) = (f.vertices, f.joints, f.expr_params);
        if j < 1 {
            return Err(Error::Config(format!("FLAME needs at least one joint, found {j}")));
        }
        let d = f.shape_params + e;
        let parents = crate::flame::read_parents(w, j)?;
        let shapedirs = w.f32_shaped("flame.shapedirs", &[v, 3, d])?;
        let j_regressor = w.f32_shaped("flame.J_regressor", &[j, v])?;
        let mut jreg_expr = vec![0f32; j * 3 * e];
        for jj in 0..j {
            for (vi, &r) in j_regressor[jj * v..(jj + 1) * v].iter().enumerate() {
                if r == 0.0 {
                    continue;
                }
                for k in 0..3 {
                    let dirs = &shapedirs[(vi * 3 + k) * d + f.shape_params..(vi * 3 + k + 1) * d];
                    let out = &mut jreg_expr[(jj * 3 + k) * e..(jj * 3 + k + 1) * e];
                    out.iter_mut().zip(dirs).for_each(|(o, s)| *o += r * s);
                }
            }
        }
        let push = FlamePush {
            vertices: v as u32,
            expr: e as u32,
            stride: d as u32,
            pose: ((j - 1) * 9) as u32,
            joints: j as u32,
            scale: f.scale,
        };
        Ok(FlameHost {
            params: vec![0.0; push.params_len()],
            push,
            shape_n: f.shape_params,
            v_template: w.f32_shaped("flame.v_template", &[v, 3])?,
            shapedirs,
            j_regressor,
            parents,
            jreg_expr,
            shapecode: None,
            v_identity: vec![0.0; 3 * v],
            j_identity: vec![[0.0; 3]; j],
        })
    }

    /// The shader's push constants.
    pub fn push(&self) -> FlamePush {
        self.push
    }

    /// Bakes the identity; returns whether it changed (the identity buffer then needs rewriting).
    pub fn set_identity(&mut self, shapecode: &[f32]) -> Result<bool> {
        if shapecode.len() != self.shape_n {
            return Err(input_error("shapecode", "source", format!("expected {} values, found {}", self.shape_n, shapecode.len())));
        }
        if self.shapecode.as_deref() == Some(shapecode) {
            return Ok(false);
        }
        let (v, d) = (self.push.vertices as usize, self.push.stride as usize);
        for (i, out) in self.v_identity.iter_mut().enumerate() {
            let dirs = &self.shapedirs[i * d..i * d + self.shape_n];
            *out = self.v_template[i] + dirs.iter().zip(shapecode).map(|(a, b)| a * b).sum::<f32>();
        }
        for (jj, joint) in self.j_identity.iter_mut().enumerate() {
            *joint = [0.0; 3];
            for (vi, &r) in self.j_regressor[jj * v..(jj + 1) * v].iter().enumerate() {
                for k in 0..3 {
                    joint[k] += r * self.v_identity[vi * 3 + k];
                }
            }
        }
        self.shapecode = Some(shapecode.to_vec());
        Ok(true)
    }

    /// The identity mesh `[V, 3]` (valid after `set_identity`).
    pub fn identity(&self) -> &[f32] {
        &self.v_identity
    }

    /// Fills the `params` buffer's contents for `frame`; returns them.
    pub fn frame_params(&mut self, frame: &DrivingFrame) -> Result<&[f32]> {
        let (e, pd, j) = (self.push.expr as usize, self.push.pose as usize, self.push.joints as usize);
        if frame.expcode.len() != e {
            return Err(input_error("expcode", &frame.key, format!("expected {e} values, found {}", frame.expcode.len())));
        }
        if self.shapecode.is_none() {
            return Err(Error::Other("GPU FLAME: a frame before set_identity".into()));
        }
        self.params[..e].copy_from_slice(&frame.expcode);
        let (pc, ec) = (&frame.posecode, &frame.eyecode);
        // FLAME's full pose: [global, neck (zero), jaw, eye 3, eye 4].
        let axis = |jj: usize| match jj {
            0 => [pc[0], pc[1], pc[2]],
            2 => [pc[3], pc[4], pc[5]],
            3 => [ec[0], ec[1], ec[2]],
            4 => [ec[3], ec[4], ec[5]],
            _ => [0.0; 3],
        };
        let joints: Vec<[f32; 3]> = (0..j)
            .map(|jj| {
                let mut p = self.j_identity[jj];
                for (k, pk) in p.iter_mut().enumerate() {
                    let dirs = &self.jreg_expr[(jj * 3 + k) * e..(jj * 3 + k + 1) * e];
                    *pk += dirs.iter().zip(&frame.expcode).map(|(a, b)| a * b).sum::<f32>();
                }
                p
            })
            .collect();
        let mut chain: Vec<Rigid> = Vec::with_capacity(j);
        for jj in 0..j {
            let r = rodrigues(axis(jj));
            if jj > 0 {
                for a in 0..3 {
                    for b in 0..3 {
                        self.params[e + (jj - 1) * 9 + a * 3 + b] = r[a][b] - if a == b { 1.0 } else { 0.0 };
                    }
                }
            }
            let t = if jj == 0 { joints[0] } else { std::array::from_fn(|k| joints[jj][k] - joints[self.parents[jj]][k]) };
            let local: Rigid = std::array::from_fn(|a| [r[a][0], r[a][1], r[a][2], t[a]]);
            let g = if jj == 0 { local } else { compose(&chain[self.parents[jj]], &local) };
            chain.push(g);
        }
        for (jj, g) in chain.iter().enumerate() {
            let jt = joints[jj];
            for a in 0..3 {
                let t = g[a][3] - (g[a][0] * jt[0] + g[a][1] * jt[1] + g[a][2] * jt[2]);
                let row = [g[a][0], g[a][1], g[a][2], t];
                self.params[e + pd + jj * 12 + a * 4..e + pd + jj * 12 + a * 4 + 4].copy_from_slice(&row);
            }
        }
        Ok(&self.params)
    }
}

/// The device side of GPU FLAME: the pipeline, the weights on the device, the identity and `params`
/// buffers. Everything per frame goes through `&self` (buffer writes), so a recorded frame can borrow it.
pub struct GpuFlame<'w> {
    push: FlamePush,
    pipeline: ComputePipeline,
    identity: Buffer,
    params: Buffer,
    shapedirs: DeviceWeight<'w>,
    posedirs: DeviceWeight<'w>,
    lbs: DeviceWeight<'w>,
}

impl<'w> GpuFlame<'w> {
    /// Every device allocation `new` makes, by name and bytes (`import_align`: the device's host-import
    /// alignment, when weights will be imported).
    pub fn plan(cfg: &ModelConfig, import_align: Option<u64>) -> Vec<(String, u64)> {
        let f = &cfg.flame;
        let (v, j) = (f.vertices as u64, f.joints as u64);
        let (d, pd) = ((f.shape_params + f.expr_params) as u64, (j.max(1) - 1) * 9);
        let params = 4 * (f.expr_params as u64 + pd + 12 * j);
        vec![
            ("flame.shapedirs".into(), planned_bytes(4 * v * 3 * d, import_align)),
            ("flame.posedirs".into(), planned_bytes(4 * v * 3 * pd, import_align)),
            ("flame.weights".into(), planned_bytes(4 * v * j, import_align)),
            ("flame identity".into(), planned_bytes(4 * 3 * v, None)),
            ("flame params".into(), planned_bytes(params, None)),
        ]
    }

    /// Uploads the FLAME arrays (imported from the mapped file when `import` and the device allows).
    pub fn new(gpu: &Gpu, w: &'w dyn Weights, cfg: &ModelConfig, import: bool) -> Result<Self> {
        let f = &cfg.flame;
        let (v, j) = (f.vertices, f.joints);
        let d = f.shape_params + f.expr_params;
        let pd = (j.max(1) - 1) * 9;
        let push = FlamePush {
            vertices: v as u32,
            expr: f.expr_params as u32,
            stride: d as u32,
            pose: pd as u32,
            joints: j as u32,
            scale: f.scale,
        };
        let mut up = WeightUpload::new(gpu, w, import);
        let shapedirs = up.f32("flame.shapedirs", &[v, 3, d])?;
        let posedirs = up.f32("flame.posedirs", &[v, 3, pd])?;
        let lbs = up.f32("flame.weights", &[v, j])?;
        let identity = gpu.memory.buffer("flame identity", 4 * 3 * v as u64, MemoryLocation::CpuToGpu)?;
        let params = gpu.memory.buffer("flame params", 4 * push.params_len() as u64, MemoryLocation::CpuToGpu)?;
        let spec = twin::spec_constants();
        let pipeline = ComputePipeline::new(&gpu.ctx, &gpu.cache, "flame_lbs", gaga_kernels::twin::FLAME_LBS_SPV, &spec, 6, 24)?;
        Ok(GpuFlame { push, pipeline, identity, params, shapedirs, posedirs, lbs })
    }

    /// Whether the weights were imported rather than copied.
    pub fn imported(&self) -> bool {
        self.shapedirs.imported && self.posedirs.imported && self.lbs.imported
    }

    /// Writes the identity mesh when `host.set_identity` reported a change.
    pub fn set_identity(&self, host: &mut FlameHost<'_>, shapecode: &[f32]) -> Result<()> {
        if host.set_identity(shapecode)? {
            self.identity.write(host.identity())?;
        }
        Ok(())
    }

    /// Writes the frame's expression, pose feature and joint transforms.
    pub fn write_frame(&self, host: &mut FlameHost<'_>, frame: &DrivingFrame) -> Result<()> {
        self.params.write(host.frame_params(frame)?)
    }

    /// The dispatch that writes rows `0..V` of `positions` (`[N, 3]` f32, N >= V).
    pub fn dispatch<'a>(&'a self, positions: &'a Buffer) -> Result<Dispatch<'a>> {
        let need = 12 * self.push.vertices as u64;
        if positions.size() < need {
            return Err(Error::Vulkan(format!("buffer `{}`: {} bytes, FLAME writes {need}", positions.name(), positions.size())));
        }
        let buffers = vec![&self.identity, &self.shapedirs.buffer, &self.posedirs.buffer, &self.lbs.buffer, &self.params, positions];
        Ok(Dispatch {
            label: "flame".into(),
            pipeline: &self.pipeline,
            buffers,
            push: bytemuck::bytes_of(&self.push).to_vec(),
            groups: self.push.dispatch(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flame::Flame;
    use crate::render::testing::{driving_frame, seeded_frame_weights};
    use gaga_kernels::testing::{assert_close, Tolerance};

    /// The host half plus the shader's twin against `runtime::flame::Flame`, no device needed.
    #[test]
    fn host_transforms_and_the_shader_twin_reproduce_cpu_flame() {
        let cfg = ModelConfig::small();
        let w = seeded_frame_weights(&cfg, 3);
        let avatar = crate::render::testing::synthetic_avatar(&cfg, 1);
        let mut host = FlameHost::new(&w, &cfg).expect("host");
        let mut cpu = Flame::new(&w, &cfg).expect("cpu flame");
        cpu.set_identity(&avatar.shapecode).expect("identity");
        assert!(host.set_identity(&avatar.shapecode).expect("identity"));
        assert!(!host.set_identity(&avatar.shapecode).expect("same identity"), "a repeated identity is not recomputed");
        let v = cfg.flame.vertices;
        let (sd, pd, lbs) =
            (w.f32("flame.shapedirs").expect("sd"), w.f32("flame.posedirs").expect("pd"), w.f32("flame.weights").expect("w"));
        for i in 0..3 {
            let frame = driving_frame(&cfg, i);
            let mut want = vec![0f32; 3 * v];
            cpu.pose(&frame.expcode, &frame.posecode, &frame.eyecode, &frame.key, &mut want).expect("cpu pose");
            let push = host.push();
            let identity = host.identity().to_vec();
            let params = host.frame_params(&frame).expect("params").to_vec();
            let mut got = vec![0f32; 3 * v];
            twin::flame_lbs(&push, &identity, &sd, &pd, &lbs, &params, &mut got);
            // Same formula, different summation order (joints regressed from precomputed expression
            // dirs, sequential vs 8-lane dots): f32 rounding only, values ~1 with sums of <= 400 terms.
            assert_close(&format!("frame {i}"), &got, &want, Tolerance::Custom { abs: 2e-5, rel: 1e-5 });
        }
    }

    #[test]
    fn a_wrong_expression_length_names_the_frame() {
        let cfg = ModelConfig::small();
        let w = seeded_frame_weights(&cfg, 3);
        let mut host = FlameHost::new(&w, &cfg).expect("host");
        host.set_identity(&vec![0.0; cfg.flame.shape_params]).expect("identity");
        let mut frame = driving_frame(&cfg, 0);
        frame.expcode.pop();
        let err = host.frame_params(&frame).expect_err("short").to_string();
        assert!(err.contains("seeded_0") && err.contains("expcode"), "{err}");
    }

    #[test]
    fn the_plan_names_every_allocation() {
        let plan = GpuFlame::plan(&ModelConfig::official(), Some(4096));
        let names: Vec<&str> = plan.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(names, ["flame.shapedirs", "flame.posedirs", "flame.weights", "flame identity", "flame params"]);
        // shapedirs [5023, 3, 400] f32 = 24,110,400 bytes, rounded to pages plus one.
        assert_eq!(plan[0].1, 24_110_400u64.div_ceil(4096) * 4096 + 4096);
    }
}

//! Running a [`PackedConv`]: convolutions and linear layers, on the detected or a chosen kernel.

use super::pack::{Packed, PackedConv};
use super::{act_quant_for, conv, ensure, fconv, quantise_activation, ActQuant, QError, QIsa, QResult};
use crate::scratch::Scratch;
use crate::sgemm::Isa;

/// Which micro-kernel family runs a call: int8 weights need [`Kernel::I8`], float ones [`Kernel::Float`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    I8(QIsa),
    Float(Isa),
}

impl PackedConv<'_> {
    /// The fastest kernel for this weight's format on the running CPU.
    pub fn kernel(&self) -> Kernel {
        match self.w {
            Packed::I8 { .. } => Kernel::I8(QIsa::detect()),
            _ => Kernel::Float(Isa::detect()),
        }
    }

    /// `out = conv(x, w) + bias` for `x` `[c_in, h, w]`, `out` `[c_out, h, w]` (stride 1, zero padding
    /// `k / 2`). int8 weights quantise `x` with `act` (`None`: [`act_quant_for`] of this `x`); float
    /// weights ignore it. Allocation-free once `scratch` has grown; results are identical for any
    /// thread count, and for int8 on every kernel.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        scratch: &mut Scratch,
        x: &[f32],
        h: usize,
        w: usize,
        act: Option<ActQuant>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        self.run_on(self.kernel(), scratch, x, h, w, act, bias, out)
    }

    /// [`PackedConv::run`] of an int8 weight with about 15-bit activations, for layers on small maps where
    /// the int8 kernel's cost is small and its activation rounding is not averaged away: pass 1 runs on
    /// `x` quantised with `a` (`act`, or [`act_quant_for`] of `x`; scale `s`, zero point `z`), pass 2 on the
    /// rounding residual `x - s * (q(x) - z)` (at most `s / 2`) quantised with `s / 254`, and the two
    /// outputs are summed.
    /// The output's activation rounding is thus bounded by `s / 508` per tap instead of `s / 2`. Twice the
    /// int8 work; the residual and pass 2's output live in the scratch's second buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn run_fine(
        &self,
        scratch: &mut Scratch,
        x: &[f32],
        h: usize,
        w: usize,
        act: Option<ActQuant>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        self.run_fine_on(self.kernel(), scratch, x, h, w, act, bias, out)
    }

    /// [`PackedConv::run_fine`] on a chosen int8 kernel.
    #[allow(clippy::too_many_arguments)]
    pub fn run_fine_on(
        &self,
        kernel: Kernel,
        scratch: &mut Scratch,
        x: &[f32],
        h: usize,
        w: usize,
        act: Option<ActQuant>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        ensure!(matches!(self.w, Packed::I8 { .. }), "run_fine: weight is {:?}, not I8", self.format());
        let (n_in, n_out) = (self.c_in * h * w, self.c_out * h * w);
        ensure!(x.len() >= n_in, "run_fine: input has {} floats, [{}, {h}, {w}] needs {n_in}", x.len(), self.c_in);
        let x = &x[..n_in];
        let a = act.unwrap_or_else(|| act_quant_for(x));
        self.run_on(kernel, scratch, x, h, w, Some(a), bias, out)?;
        let mut aux = scratch.take_aux(n_in + n_out);
        let (residual, part) = aux.split_at_mut(n_in);
        let (s, z) = (a.scale, a.zero);
        for (r, &v) in residual.iter_mut().zip(x) {
            *r = v - s * (quantise_activation(v, a) as i32 - z) as f32;
        }
        let fine = ActQuant::symmetric(s / 254.0);
        let done = self.run_on(kernel, scratch, residual, h, w, Some(fine), None, &mut part[..n_out]);
        if done.is_ok() {
            out[..n_out].iter_mut().zip(&part[..n_out]).for_each(|(o, p)| *o += p);
        }
        scratch.put_aux(aux);
        done
    }

    /// [`PackedConv::run`] on a chosen kernel (tests and benches force each path). The kernel must run
    /// on this CPU (see [`QIsa::available`] and `sgemm::Isa::detect`).
    #[allow(clippy::too_many_arguments)]
    pub fn run_on(
        &self,
        kernel: Kernel,
        scratch: &mut Scratch,
        x: &[f32],
        h: usize,
        w: usize,
        act: Option<ActQuant>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        match (kernel, &self.w) {
            (Kernel::I8(isa), Packed::I8 { .. }) => {
                ensure!(isa.runs(), "packed conv: int8 kernel {isa:?} does not run on this CPU");
                conv::run_i8(isa, self, scratch, x, h, w, act, bias, out)
            }
            (Kernel::Float(isa), Packed::F32(_) | Packed::F16(_)) => {
                ensure!(isa.runs(), "packed conv: float kernel {isa:?} does not run on this CPU");
                fconv::run_float(isa, self, scratch, x, h, w, bias, out)
            }
            _ => Err(QError(format!("packed conv: kernel {kernel:?} cannot run a {:?} weight", self.format()))),
        }
    }

    /// Rows `y0..y0 + rows` of [`PackedConv::run`] for a float 1x1 weight, read in place from the whole
    /// map `x` `[c_in, h, w]` into `out` `[c_out, rows, w]`: the whole map's bits, no band copy. `Ok(false)`
    /// (nothing written) when this weight and band cannot: int8, not 1x1, or a band whose pixels do not
    /// fill the kernel's strips; the caller then runs [`PackedConv::run`] on a copy of the rows.
    #[allow(clippy::too_many_arguments)]
    pub fn run_float_rows(
        &self,
        scratch: &mut Scratch,
        x: &[f32],
        (h, w): (usize, usize),
        (y0, rows): (usize, usize),
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<bool> {
        match self.kernel() {
            Kernel::Float(isa) => fconv::run_float_rows(isa, self, scratch, x, (h, w), (y0, rows), bias, out),
            Kernel::I8(_) => Ok(false),
        }
    }

    /// Linear layer `out[r] = W x[r] + bias` for `rows` row-major vectors `x` `[rows, c_in]` into `out`
    /// `[rows, c_out]` (needs `k = 1`). int8: one activation quantiser for all rows (`None`: dynamic).
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &self,
        scratch: &mut Scratch,
        x: &[f32],
        rows: usize,
        act: Option<ActQuant>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        self.linear_on(self.kernel(), scratch, x, rows, act, bias, out)
    }

    /// [`PackedConv::linear`] on a chosen kernel.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_on(
        &self,
        kernel: Kernel,
        scratch: &mut Scratch,
        x: &[f32],
        rows: usize,
        act: Option<ActQuant>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        let (ci, co) = (self.c_in, self.c_out);
        ensure!(self.k == 1, "packed linear: weight has kernel size {}, expected 1", self.k);
        ensure!(x.len() == rows * ci, "packed linear input: {} floats, [{rows}, {ci}] needs {}", x.len(), rows * ci);
        ensure!(out.len() == rows * co, "packed linear output: {} floats, [{rows}, {co}] needs {}", out.len(), rows * co);
        let a = Some(act.unwrap_or_else(|| act_quant_for(x)));
        for (xr, or) in x.chunks_exact(ci).zip(out.chunks_exact_mut(co)) {
            self.run_on(kernel, scratch, xr, 1, 1, a, bias, or)?;
        }
        Ok(())
    }
}

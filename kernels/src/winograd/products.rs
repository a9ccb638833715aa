//! The 36 products `M_xi = U_xi V_xi` of one block, on the SGEMM micro-kernels.
//!
//! Strips are `nr` tiles wide (32 on AVX-512). A 16x16 map has 16 tiles, so its only strip was half
//! padding: the 8x32 kernel did twice the FMAs needed, for 10 of the refiner's 3x3 layers. A last strip of
//! at most 16 tiles now runs on `sgemm::tile_narrow` (two panels x 16 columns), which makes each value
//! with the same FMAs in the same order as the wide kernel, so the output bits do not change.

use super::{each, Block, XI};
use crate::matmul::SyncPtr;
use crate::sgemm::{self, MR, NR_NARROW};

impl Block<'_> {
    /// The 36 products `M_xi = U_xi V_xi` (`[c_out_pad x nt]` each, bias-free).
    pub(super) fn products(&self, v: &[f32], m: &mut [f32]) {
        let (ci, nt, co_pad, isa) = (self.ww.spec.c_in, self.plan.nt, self.plan.co_pad, self.plan.isa);
        let nr = isa.nr();
        let plen = sgemm::packed_a_len(self.ww.spec.c_out, ci);
        let kc = sgemm::kc_step(ci);
        let zero = [0f32; 2 * MR];
        let mp = SyncPtr(m.as_mut_ptr());
        // Strips past the block's tiles would only read V columns left from an earlier block: skip them.
        let strips = self.n.div_ceil(nr);
        let rem = self.n % nr;
        let narrow = self.narrow && nr > NR_NARROW && rem > 0 && rem <= NR_NARROW;
        // The wide strips; with `narrow`, the last one runs on the narrow kernel below.
        let wide = if narrow { strips - 1 } else { strips };
        let panels = co_pad / MR;
        each(XI, self.par, |xi| {
            let a = &self.ww.u[xi * plen..(xi + 1) * plen];
            let b = &v[xi * ci * nt..(xi + 1) * ci * nt];
            let c = mp.get().wrapping_add(xi * co_pad * nt);
            let mut q0 = 0;
            while q0 < ci {
                let kcb = kc.min(ci - q0);
                // Panel outer, strips inner: the 8 x kc panel stays in L1 while B's strips come from L2.
                for (p, panel) in a.chunks_exact(MR * ci).enumerate() {
                    for s in 0..wide {
                        // SAFETY: B rows q0..q0 + kcb of V_xi have nt >= (s + 1) * nr columns; C rows
                        // p*MR..p*MR + MR (< co_pad) of M_xi belong to this xi alone.
                        unsafe {
                            sgemm::tile_split(
                                isa,
                                kcb,
                                panel,
                                &zero,
                                q0,
                                b[q0 * nt + s * nr..].as_ptr(),
                                nt,
                                c.add(p * MR * nt + s * nr),
                                nt,
                                MR,
                                nr,
                                q0 == 0,
                            );
                        }
                    }
                }
                if narrow {
                    let j0 = wide * nr;
                    for p in (0..panels).step_by(2) {
                        let np = (panels - p).min(2);
                        // SAFETY: nt is a multiple of nr, so B rows of V_xi and C rows of M_xi have 16
                        // columns from j0 (< n <= nt); C rows p*MR..(p + np)*MR (<= co_pad) belong to this xi.
                        let ran = unsafe {
                            sgemm::tile_narrow(
                                isa,
                                kcb,
                                a,
                                ci,
                                p,
                                np,
                                &zero,
                                q0,
                                b[q0 * nt + j0..].as_ptr(),
                                nt,
                                c.add(p * MR * nt + j0),
                                nt,
                                q0 == 0,
                            )
                        };
                        debug_assert!(ran, "only ISAs with strips wider than 16 take this path");
                    }
                }
                q0 += kcb;
            }
        });
    }
}

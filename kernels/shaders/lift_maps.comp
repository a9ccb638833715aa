#version 450
// Small data movers of the lift, chosen by OP:
//   0 COPY:      y[y_off + r*y_row + c*y_col]  = x[x_off + r*x_row + c*x_col]   (r < rows, c < cols)
//   1 ACCUMULATE: the same with +=  (adds pos_embed)
//   2 SCALE_ADD: y[r*cols + c] += x[r*cols + c] * g[c]   (LayerScale then the residual add; g bound at 1)
// Strides of 0 broadcast (CLS, the global feature, the direction code), swapped strides transpose
// (patch embedding [dim, G*G] -> tokens). One invocation per (c, r). The CPU twin is
// kernels/src/twin/lift_maps.rs.

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 2) const uint OP = 0;

layout(std430, set = 0, binding = 0) readonly buffer Input { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Gamma { float g[]; };
layout(std430, set = 0, binding = 2) buffer Output { float y[]; };

layout(push_constant) uniform Params {
    uint rows;
    uint cols;
    uint x_off;
    uint x_row;
    uint x_col;
    uint y_off;
    uint y_row;
    uint y_col;
} p;

void main() {
    uint c = gl_GlobalInvocationID.x;
    uint r = gl_GlobalInvocationID.y;
    if (c >= p.cols || r >= p.rows) {
        return;
    }
    uint yi = p.y_off + r * p.y_row + c * p.y_col;
    precise float v = x[p.x_off + r * p.x_row + c * p.x_col];
    if (OP == 0) {
        y[yi] = v;
    } else if (OP == 1) {
        y[yi] = y[yi] + v;
    } else {
        y[yi] = y[yi] + v * g[c];
    }
}

#version 450
// Element-wise ops on flat fp32 buffers, chosen by the OP specialization constant:
//   0: y = leaky_relu(a, SLOPE)    (b is bound but unread)
//   1: y = a + b
// A grid-stride loop covers any length with a capped dispatch (maxComputeWorkGroupCount).
// The CPU twin is kernels/src/twin/elementwise.rs.

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint OP = 0;
layout(constant_id = 2) const float SLOPE = 0.2;

layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Output { float y[]; };

layout(push_constant) uniform Params {
    uint n;
} p;

void main() {
    uint step = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += step) {
        precise float v = a[i];
        if (OP == 0) {
            if (v < 0.0) {
                v = v * SLOPE;
            }
        } else {
            v = v + b[i];
        }
        y[i] = v;
    }
}

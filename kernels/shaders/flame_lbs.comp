#version 450
// FLAME per vertex (spec 4.1): expression blendshapes and pose correctives on the identity mesh, then
// linear blend skinning with the joint transforms and the FLAME scale. Joint regression, Rodrigues and
// the kinematic chain are tiny and run on the host each frame; they arrive in `params`.
// One invocation per vertex; writes rows 0..V of the splat's positions buffer.
// The CPU twin is kernels/src/twin/flame.rs.

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

// Identity mesh v_template + shapedirs[.., ..S] . shape, [V, 3] (set once per source).
layout(std430, set = 0, binding = 0) readonly buffer Identity { float identity[]; };
// shapedirs as stored, [V, 3, D]; the expression columns are D - E .. D.
layout(std430, set = 0, binding = 1) readonly buffer Shapedirs { float shapedirs[]; };
// posedirs as stored, [V, 3, P].
layout(std430, set = 0, binding = 2) readonly buffer Posedirs { float posedirs[]; };
// Skinning weights, [V, J].
layout(std430, set = 0, binding = 3) readonly buffer LbsWeights { float lbs[]; };
// Per frame: expcode [E], pose feature [P], joint transforms [J, 3, 4] (rows of R | t).
layout(std430, set = 0, binding = 4) readonly buffer Params { float params[]; };
layout(std430, set = 0, binding = 5) writeonly buffer Positions { float positions[]; };

layout(push_constant) uniform Push {
    uint vertices;
    uint expr;     // E
    uint stride;   // D = shape + expression columns per coordinate
    uint pose;     // P
    uint joints;   // J
    float scale;
} p;

void main() {
    uint v = gl_GlobalInvocationID.x;
    if (v >= p.vertices) {
        return;
    }
    uint shape = p.stride - p.expr;
    float q[3];
    for (uint k = 0; k < 3; k++) {
        uint row = v * 3 + k;
        precise float e = 0.0;
        for (uint i = 0; i < p.expr; i++) {
            e = e + shapedirs[row * p.stride + shape + i] * params[i];
        }
        precise float c = 0.0;
        for (uint i = 0; i < p.pose; i++) {
            c = c + posedirs[row * p.pose + i] * params[p.expr + i];
        }
        precise float shaped = identity[row] + e;
        precise float corrected = shaped + c;
        q[k] = corrected;
    }
    uint tf = p.expr + p.pose;
    float m[12];
    for (uint a = 0; a < 12; a++) {
        precise float s = 0.0;
        for (uint j = 0; j < p.joints; j++) {
            s = s + lbs[v * p.joints + j] * params[tf + j * 12 + a];
        }
        m[a] = s;
    }
    for (uint a = 0; a < 3; a++) {
        precise float x = m[a * 4] * q[0] + m[a * 4 + 1] * q[1];
        precise float y = x + m[a * 4 + 2] * q[2];
        precise float z = y + m[a * 4 + 3];
        precise float scaled = z * p.scale;
        positions[v * 3 + a] = scaled;
    }
}

// Dynamic loss scaling (PyTorch's torch.amp.GradScaler) on the device, with no readback per
// step. The optim family's third file (launchers in launch/optim.rs, twin reference/optim.rs).
//
// The scaler's state is one f32 `scale` and four u32 words `state`:
//   state[0] found_inf  set to 1 by unscale when an unscaled gradient is inf or NaN; the
//                       guarded optimizer entries (optim.wgsl:*_guarded) read it and skip
//   state[1] good       steps since the last growth or backoff
//   state[2] skipped    steps skipped for overflow (read back with the epoch's metrics)
//   state[3] unused
//
// unscale (one invocation per gradient element, in place; run on every gradient of a step):
//   g = g * (1 / scale)
//   if g is inf or NaN: found_inf = 1                 (atomic; any invocation may set it)
// update (one invocation, after the optimizer step):
//   found_inf = 1: scale = scale * backoff, good = 0, skipped += 1
//   else:          good += 1; if good == interval: good = 0, scale = scale * growth (if finite)
//   found_inf = 0
//
// Bindings:
//   unscale: 1 grad (n) rw f32   2 scale (1) f32   3 state (4) rw atomic u32
//   update:  1 scale (1) rw f32  2 state (4) rw u32
//
// inf/NaN is tested on the bits (all exponent bits set): WGSL has no isinf/isnan and a
// compiler may assume floats finite.

// #include common/grid.wgsl

struct ScaleParams {
    n: u32,          // elements of grad (unscale)
    g_off: u32,      // element offset of grad[0] (unscale)
    interval: u32,   // good steps between growths (update)
    _pad: u32,
    growth: f32,     // growth factor (update), e.g. 2
    backoff: f32,    // backoff factor (update), e.g. 0.5
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: ScaleParams;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;          // unscale: (n)
@group(0) @binding(2) var<storage, read> scale: array<f32>;               // unscale: (1)
@group(0) @binding(3) var<storage, read_write> flags: array<atomic<u32>>; // unscale: (4)
@group(0) @binding(1) var<storage, read_write> scale_rw: array<f32>;      // update: (1)
@group(0) @binding(2) var<storage, read_write> state: array<u32>;         // update: (4)

fn non_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(256)
fn unscale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.n) { return; }
    let g = grad[P.g_off + i] * (1.0 / scale[0]);
    grad[P.g_off + i] = g;
    if (non_finite(g)) {
        atomicStore(&flags[0], 1u);
    }
}

@compute @workgroup_size(1)
fn update() {
    var s = scale_rw[0];
    if (state[0] != 0u) {
        s = s * P.backoff;
        state[1] = 0u;
        state[2] = state[2] + 1u;
    } else {
        state[1] = state[1] + 1u;
        if (state[1] >= P.interval) {
            state[1] = 0u;
            let grown = s * P.growth;
            if (!non_finite(grown)) { s = grown; }
        }
    }
    scale_rw[0] = s;
    state[0] = 0u;
}

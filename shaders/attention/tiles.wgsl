// The workgroup tiles of the tiled rung (forward_tiled.wgsl, backward_tiled.wgsl): BC rows of the
// other side staged per step, read back as blocks of 4 rows. Both tiles have one override-sized
// array type (naga 30's override pass rejects a module with a second array type after it).
//
//   forward, dQ: ta = (BC, D) keys, tb = (BC, D) values                      (stage_keys)
//   dK / dV:     ta = (BC, D) queries, tb = (BC, D) rows of dO, then (BC) rows of (L, delta, 0, 0)
//
// Needs the bindings q4, k4, v4 (qkv.wgsl) and the constants below from the launcher.

// #include attention/qkv.wgsl

override WG: u32 = 16u;      // invocations per workgroup; each owns 4 rows
override BC: u32 = 64u;      // rows of the other side per tile (a multiple of 4)
override TILE: u32 = 528u;   // vec4 per staged tile: BC (D / 4 + 1) (set by the launcher)

var<workgroup> ta: array<vec4<f32>, TILE>;
var<workgroup> tb: array<vec4<f32>, TILE>;

// Rows a .. a + 3 (vec4 index a of row a, D / 4 = db per row) of a staged tile, column block c.
fn tile_a(a: u32, db: u32, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(ta[a + c], ta[a + db + c], ta[a + 2u * db + c], ta[a + 3u * db + c]);
}

fn tile_b(a: u32, db: u32, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(tb[a + c], tb[a + db + c], tb[a + 2u * db + c], tb[a + 3u * db + c]);
}

// Stage keys t0 .. t0 + BC of head bh in ta and their values in tb, the workgroup's invocations
// (`lid`) sharing the copy; rows past Tk are clamped to the last key (staged, never visible).
fn stage_keys(bh: u32, t0: u32, lid: u32) {
    let db = D / 4u;
    let krow0 = bh * p.tk;
    let klast = p.tk - 1u;
    let ko = p.k_off / 4u;
    let vo = p.v_off / 4u;
    for (var e = lid; e < BC * db; e += WG) {
        let r = (krow0 + min(t0 + e / db, klast)) * db + e % db;
        ta[e] = k4[ko + r];
        tb[e] = v4[vo + r];
    }
}

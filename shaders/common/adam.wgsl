// Adam / AdamW on one element, shared by optim.wgsl:adam and optim8bit.wgsl:adam8bit. Step t >= 1:
//
//   p   = p * (1 - lr * wd)                         (AdamW only, DECOUPLED = 1)
//   g   = grad + wd * p                             (Adam only)
//   m   = b1 * m + (1 - b1) * g                     (exp_avg)
//   v   = b2 * v + (1 - b2) * g^2                   (exp_avg_sq)
//   p   = p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
//
// with the bias corrections bc1 = 1 - b1^t and bc2 = 1 - b2^t computed on the host.

struct AdamParams {
    n: u32,             // elements of p, grad, m and v
    p_off: u32,         // element offset of p[0]
    g_off: u32,         // element offset of grad[0]
    m_off: u32,         // element offset of m[0] (8-bit: word offset of its codes)
    v_off: u32,         // element offset of v[0] (8-bit: word offset of its codes)
    lr: f32,            // learning rate
    beta1: f32,         // b1
    beta2: f32,         // b2
    eps: f32,           // added to the corrected sqrt(v)
    weight_decay: f32,  // wd (L2 for Adam, decoupled for AdamW)
    bc1: f32,           // 1 - b1^t
    bc2: f32,           // 1 - b2^t
}

// 1 = decoupled weight decay (AdamW), 0 = L2 added to the gradient (Adam).
override DECOUPLED: u32 = 0u;

// The updated (p, m, v) of one element from its parameter w, gradient g and moments m, v.
fn adam_element(h: AdamParams, w: f32, g: f32, m: f32, v: f32) -> vec3<f32> {
    var wd = w;
    var gd = g;
    if (DECOUPLED == 1u) {
        wd = w * (1.0 - h.lr * h.weight_decay);
    } else {
        gd = g + h.weight_decay * w;
    }
    let m_new = h.beta1 * m + (1.0 - h.beta1) * gd;
    let v_new = h.beta2 * v + (1.0 - h.beta2) * gd * gd;
    let denom = sqrt(v_new) / sqrt(h.bc2) + h.eps;
    return vec3<f32>(wd - (h.lr / h.bc1) * (m_new / denom), m_new, v_new);
}

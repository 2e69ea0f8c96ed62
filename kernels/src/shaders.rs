//! The embedded WGSL sources: one `include_str!` table, and the `// #include` pass.
//!
//! A shader file may contain lines of the form `// #include common/name.wgsl`; the line is
//! replaced by that file's text (each helper at most once). Being a comment, the directive keeps
//! every file valid WGSL for editors; the naga test validates the files *after* expansion.
//!
//! Set `KILN_DUMP_WGSL=dir` to write every expanded shader to `dir/<name>.wgsl` when it is compiled.

/// `(path relative to shaders/, source)` for every WGSL file kiln ships.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "common/strided.wgsl",
        include_str!("../../shaders/common/strided.wgsl"),
    ),
    (
        "common/math.wgsl",
        include_str!("../../shaders/common/math.wgsl"),
    ),
    (
        "common/grid.wgsl",
        include_str!("../../shaders/common/grid.wgsl"),
    ),
    (
        "common/online_softmax.wgsl",
        include_str!("../../shaders/common/online_softmax.wgsl"),
    ),
    ("unary.wgsl", include_str!("../../shaders/unary.wgsl")),
    ("binary.wgsl", include_str!("../../shaders/binary.wgsl")),
    ("where.wgsl", include_str!("../../shaders/where.wgsl")),
    ("fill.wgsl", include_str!("../../shaders/fill.wgsl")),
    ("cast.wgsl", include_str!("../../shaders/cast.wgsl")),
    ("cast_f16.wgsl", include_str!("../../shaders/cast_f16.wgsl")),
    ("reduce.wgsl", include_str!("../../shaders/reduce.wgsl")),
    ("cluster.wgsl", include_str!("../../shaders/cluster.wgsl")),
    ("softmax.wgsl", include_str!("../../shaders/softmax.wgsl")),
    (
        "cross_entropy.wgsl",
        include_str!("../../shaders/cross_entropy.wgsl"),
    ),
    ("index.wgsl", include_str!("../../shaders/index.wgsl")),
    ("dropout.wgsl", include_str!("../../shaders/dropout.wgsl")),
    ("optim.wgsl", include_str!("../../shaders/optim.wgsl")),
    ("pool.wgsl", include_str!("../../shaders/pool.wgsl")),
    ("rnn.wgsl", include_str!("../../shaders/rnn.wgsl")),
    ("norm.wgsl", include_str!("../../shaders/norm.wgsl")),
    (
        "bias_gelu.wgsl",
        include_str!("../../shaders/bias_gelu.wgsl"),
    ),
    (
        "batch_norm.wgsl",
        include_str!("../../shaders/batch_norm.wgsl"),
    ),
    (
        "common/matmul.wgsl",
        include_str!("../../shaders/common/matmul.wgsl"),
    ),
    (
        "matmul/naive.wgsl",
        include_str!("../../shaders/matmul/naive.wgsl"),
    ),
    (
        "matmul/tiled.wgsl",
        include_str!("../../shaders/matmul/tiled.wgsl"),
    ),
    (
        "matmul/regblock.wgsl",
        include_str!("../../shaders/matmul/regblock.wgsl"),
    ),
    (
        "matmul/vec4.wgsl",
        include_str!("../../shaders/matmul/vec4.wgsl"),
    ),
    (
        "matmul/subgroup.wgsl",
        include_str!("../../shaders/matmul/subgroup.wgsl"),
    ),
    (
        "matmul/f16.wgsl",
        include_str!("../../shaders/matmul/f16.wgsl"),
    ),
    (
        "matmul/coop.wgsl",
        include_str!("../../shaders/matmul/coop.wgsl"),
    ),
    (
        "common/nf4.wgsl",
        include_str!("../../shaders/common/nf4.wgsl"),
    ),
    (
        "nf4/simple.wgsl",
        include_str!("../../shaders/nf4/simple.wgsl"),
    ),
    (
        "nf4/simple_f16.wgsl",
        include_str!("../../shaders/nf4/simple_f16.wgsl"),
    ),
    (
        "nf4/block.wgsl",
        include_str!("../../shaders/nf4/block.wgsl"),
    ),
    (
        "common/conv.wgsl",
        include_str!("../../shaders/common/conv.wgsl"),
    ),
    (
        "conv/direct.wgsl",
        include_str!("../../shaders/conv/direct.wgsl"),
    ),
    (
        "conv/implicit_gemm.wgsl",
        include_str!("../../shaders/conv/implicit_gemm.wgsl"),
    ),
    (
        "attention/params.wgsl",
        include_str!("../../shaders/attention/params.wgsl"),
    ),
    (
        "attention/forward_io.wgsl",
        include_str!("../../shaders/attention/forward_io.wgsl"),
    ),
    (
        "attention/backward_io.wgsl",
        include_str!("../../shaders/attention/backward_io.wgsl"),
    ),
    (
        "attention/forward.wgsl",
        include_str!("../../shaders/attention/forward.wgsl"),
    ),
    (
        "attention/forward_block.wgsl",
        include_str!("../../shaders/attention/forward_block.wgsl"),
    ),
    (
        "attention/forward_panel.wgsl",
        include_str!("../../shaders/attention/forward_panel.wgsl"),
    ),
    (
        "attention/backward_panel.wgsl",
        include_str!("../../shaders/attention/backward_panel.wgsl"),
    ),
    (
        "attention/backward_prep.wgsl",
        include_str!("../../shaders/attention/backward_prep.wgsl"),
    ),
    (
        "attention/backward.wgsl",
        include_str!("../../shaders/attention/backward.wgsl"),
    ),
    (
        "attention/backward_block.wgsl",
        include_str!("../../shaders/attention/backward_block.wgsl"),
    ),
    (
        "attention/forward_tiled.wgsl",
        include_str!("../../shaders/attention/forward_tiled.wgsl"),
    ),
    (
        "attention/backward_tiled.wgsl",
        include_str!("../../shaders/attention/backward_tiled.wgsl"),
    ),
    (
        "bench/fma.wgsl",
        include_str!("../../shaders/bench/fma.wgsl"),
    ),
    (
        "bench/copy.wgsl",
        include_str!("../../shaders/bench/copy.wgsl"),
    ),
];

/// The raw text of `name`, or `None` if kiln ships no such file.
pub fn raw(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The text of `name` with every `// #include` directive expanded.
///
/// # Panics
/// If `name` or an included file is not in [`SOURCES`]: that is a bug in kiln, caught by tests.
pub fn expand(name: &str) -> String {
    let mut seen = Vec::new();
    let mut out = String::new();
    expand_into(name, &mut seen, &mut out);
    out
}

fn expand_into(name: &str, seen: &mut Vec<String>, out: &mut String) {
    let src = raw(name).unwrap_or_else(|| panic!("shader {name} is not in shaders::SOURCES"));
    for line in src.lines() {
        if let Some(inc) = line.trim().strip_prefix("// #include ") {
            let inc = inc.trim();
            if !seen.iter().any(|s| s == inc) {
                seen.push(inc.to_string());
                expand_into(inc, seen, out);
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// The value of a `const NAME: u32 = v;` in shader `name` (expanded), as naga reads it: unit
/// tests check the Rust constants a launcher sizes its grid by against the shader's.
#[cfg(test)]
pub(crate) fn wgsl_const(shader: &str, name: &str) -> u32 {
    let src = expand(shader);
    let module = naga::front::wgsl::parse_str(&src).expect("shader parses");
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{shader} has no const {name}"));
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => v,
        ref e => panic!("{shader}: const {name} is not a u32 literal: {e:?}"),
    }
}

//! The embedded WGSL sources: one `include_str!` table, and the `// #include` pass.
//!
//! A shader file may contain lines of the form `// #include common/name.wgsl`; the line is
//! replaced by that file's text (each helper at most once). Being a comment, the directive keeps
//! every file valid WGSL for editors; the naga test validates the files *after* expansion.
//!
//! Element types work the same way. A line `// #type elem = f32` declares the type alias `elem`
//! with its default; a kernel key may choose another type ([`KernelKey::typed`]), and
//! [`expand_typed`] then prepends the prelude
//!
//! ```text
//! enable f16;                    (only when some alias is f16)
//! alias elem = f16;
//! const ELEM_BYTES: u32 = 2u;    (the alias in capitals: its size, for code that must differ)
//! ```
//!
//! so one source serves the f32 and the f16 rung of a kernel (and cast.wgsl serves every pair of
//! dtypes). A typed file has no `enable` lines of its own: the prelude writes them, first.
//!
//! Set `KILN_DUMP_WGSL=dir` to write every expanded shader to `dir/<name>.wgsl` when it is compiled.
//!
//! [`KernelKey::typed`]: crate::pipeline::KernelKey::typed

/// `[(path, include_str!("../../shaders/" + path)), ...]`: each path written once.
macro_rules! shader_sources {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../shaders/", $path)))),*]
    };
}

/// `(path relative to shaders/, source)` for every WGSL file kiln ships.
pub const SOURCES: &[(&str, &str)] = shader_sources![
    "common/strided.wgsl",
    "common/math.wgsl",
    "common/grid.wgsl",
    "common/rows.wgsl",
    "common/online_softmax.wgsl",
    "common/adam.wgsl",
    "elementwise/unary.wgsl",
    "elementwise/binary.wgsl",
    "elementwise/where.wgsl",
    "elementwise/fill.wgsl",
    "elementwise/cast.wgsl",
    "reduce.wgsl",
    "cluster.wgsl",
    "itemsets.wgsl",
    "outlier.wgsl",
    "softmax.wgsl",
    "cross_entropy.wgsl",
    "index.wgsl",
    "dropout.wgsl",
    "optim.wgsl",
    "optim8bit.wgsl",
    "grad_scale.wgsl",
    "pack16.wgsl",
    "pool.wgsl",
    "rnn.wgsl",
    "norm.wgsl",
    "bias_gelu.wgsl",
    "batch_norm.wgsl",
    "common/matmul.wgsl",
    "matmul/naive.wgsl",
    "matmul/tiled.wgsl",
    "matmul/regblock.wgsl",
    "matmul/vec4.wgsl",
    "matmul/subgroup.wgsl",
    "matmul/coop.wgsl",
    "common/nf4.wgsl",
    "nf4/simple.wgsl",
    "nf4/block.wgsl",
    "common/conv.wgsl",
    "conv/direct.wgsl",
    "conv/implicit_gemm.wgsl",
    "attention/params.wgsl",
    "attention/qkv.wgsl",
    "attention/tiles.wgsl",
    "attention/forward_io.wgsl",
    "attention/backward_io.wgsl",
    "attention/forward.wgsl",
    "attention/forward_block.wgsl",
    "attention/forward_panel.wgsl",
    "attention/backward_panel.wgsl",
    "attention/backward_prep.wgsl",
    "attention/backward.wgsl",
    "attention/backward_block.wgsl",
    "attention/forward_tiled.wgsl",
    "attention/backward_tiled.wgsl",
    "bench/fma.wgsl",
    "bench/copy.wgsl",
];

/// The raw text of `name`, or `None` if kiln ships no such file.
pub fn raw(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// A WGSL scalar type that a `// #type` alias can stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Elem {
    /// `f32`.
    F32,
    /// `f16` (the adapter needs `SHADER_F16`; the prelude writes `enable f16;`).
    F16,
    /// `i32`.
    I32,
    /// `u32`.
    U32,
}

impl Elem {
    /// The WGSL name, e.g. `"f16"`.
    pub fn wgsl(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::F16 => "f16",
            Elem::I32 => "i32",
            Elem::U32 => "u32",
        }
    }

    /// Size of one element in bytes.
    pub fn bytes(self) -> u32 {
        if self == Elem::F16 { 2 } else { 4 }
    }

    /// The type whose [WGSL name](Elem::wgsl) is `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Elem::F32, Elem::F16, Elem::I32, Elem::U32]
            .into_iter()
            .find(|e| e.wgsl() == s)
    }
}

/// The text of `name` with every `// #include` directive expanded, at its default types.
///
/// # Panics
/// If `name` or an included file is not in [`SOURCES`]: that is a bug in kiln, caught by tests.
pub fn expand(name: &str) -> String {
    expand_typed(name, &[])
}

/// The text of `name` with every `// #include` expanded and the `// #type` aliases set: those
/// in `types` to the type given, the others to their defaults (see the module doc).
///
/// # Panics
/// If a file is missing, a `// #type` line is malformed, or `types` names an alias the shader
/// does not declare: bugs in kiln, caught by tests.
pub fn expand_typed(name: &str, types: &[(&str, Elem)]) -> String {
    let mut seen = Vec::new();
    let mut aliases = Vec::new();
    let mut body = String::new();
    expand_into(name, &mut seen, &mut aliases, &mut body);
    for (alias, _) in types {
        assert!(
            aliases.iter().any(|(a, _)| a == alias),
            "{name} declares no `// #type {alias}`"
        );
    }
    let resolved: Vec<(String, Elem)> = aliases
        .into_iter()
        .map(|(a, default)| {
            let t = types.iter().find(|(n, _)| *n == a).map_or(default, |t| t.1);
            (a, t)
        })
        .collect();
    let mut out = String::new();
    if resolved.iter().any(|(_, t)| *t == Elem::F16) {
        out.push_str("enable f16;\n");
    }
    for (alias, t) in &resolved {
        let upper = alias.to_uppercase();
        let (ty, bytes) = (t.wgsl(), t.bytes());
        out.push_str(&format!(
            "alias {alias} = {ty};\nconst {upper}_BYTES: u32 = {bytes}u;\n"
        ));
    }
    out.push_str(&body);
    out
}

fn expand_into(
    name: &str,
    seen: &mut Vec<String>,
    aliases: &mut Vec<(String, Elem)>,
    out: &mut String,
) {
    let src = raw(name).unwrap_or_else(|| panic!("shader {name} is not in shaders::SOURCES"));
    for line in src.lines() {
        let directive = line.trim();
        if let Some(inc) = directive.strip_prefix("// #include ") {
            let inc = inc.trim();
            if !seen.iter().any(|s| s == inc) {
                seen.push(inc.to_string());
                expand_into(inc, seen, aliases, out);
            }
        } else if let Some(decl) = directive.strip_prefix("// #type ") {
            let parsed = decl
                .split_once('=')
                .and_then(|(a, t)| Some((a.trim().to_string(), Elem::parse(t.trim())?)));
            let decl =
                parsed.unwrap_or_else(|| panic!("{name}: `// #type {decl}` is not `alias = type`"));
            aliases.push(decl);
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

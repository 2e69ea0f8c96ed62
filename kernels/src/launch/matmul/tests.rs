//! Unit tests of the matmul launchers: shader constants against the Rust ones, feature rungs
//! under their capabilities, configurations, vec4 modes, layouts and tiles.

use super::*;
use crate::shaders::wgsl_const;

/// Parse and validate `key`'s shader with naga under `caps`, panicking with naga's report.
fn validate(key: KernelKey, caps: naga::valid::Capabilities) {
    let src = key.source();
    let shader = key.module_label();
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{shader}: {}", e.emit_to_string(&src)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .subgroup_stages(naga::valid::ShaderStages::all())
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{shader}: {}", e.emit_to_string(&src)));
}

#[test]
fn feature_rungs_validate_with_their_capabilities() {
    use naga::valid::Capabilities as C;
    validate(MatmulVariant::Subgroup.key(), C::SUBGROUP);
    validate(MatmulVariant::F16.key(), C::SHADER_FLOAT16);
    validate(
        MatmulVariant::Coop.key(),
        C::SHADER_FLOAT16 | C::COOPERATIVE_MATRIX | C::SUBGROUP,
    );
}

#[test]
fn register_blocks_match_shaders() {
    let block = |f: &str| (wgsl_const(f, "BM"), wgsl_const(f, "BN"));
    assert_eq!(block("matmul/regblock.wgsl"), REGBLOCK_BLOCK);
    assert_eq!(block("matmul/subgroup.wgsl"), REGBLOCK_BLOCK);
    // vec4's BM is an override (a tile choice); BN stays a const.
    assert_eq!(wgsl_const("matmul/vec4.wgsl", "BN"), VEC4_BLOCK.1);
}

#[test]
fn configs_round_trip_and_check() {
    for v in MatmulVariant::LADDER {
        assert_eq!(MatmulVariant::from_name(v.name()), Some(v));
        for c in MatmulConfig::candidates(v) {
            assert_eq!(c.check(), Ok(()), "{}", c.label());
            assert_eq!(MatmulConfig::parse(&c.label()), Some(c), "{}", c.label());
        }
    }
    assert_eq!(
        MatmulConfig::parse("vec4:8x4:bm16"),
        Some(MatmulConfig::default_for(MatmulVariant::Vec4))
    );
    assert_eq!(MatmulConfig::parse("vec4:8x4:bm3"), None);
    assert_eq!(MatmulConfig::parse("tiled:8x16"), None);
    assert_eq!(MatmulConfig::parse("warp:8x8"), None);
    assert_eq!(MatmulConfig::parse("naive:64x64"), None);
    let v8 = MatmulConfig {
        rows: 8,
        ..MatmulConfig::default_for(MatmulVariant::Vec4)
    };
    assert_eq!(v8.workgroup_tile(), (32, 128));
    assert_eq!(MatmulVariant::Subgroup.workgroup_tile(), (4, 256));
}

#[test]
fn vec4_modes_follow_strides_and_alignment() {
    let d = MatmulDims {
        batch: 2,
        m: 8,
        n: 12,
        k: 16,
    };
    let (a, b) = (MatLayout::contiguous(8, 16), MatLayout::contiguous(16, 12));
    assert_eq!(vec4_modes(a, b, d), (1, 1));
    let (at, bt) = (MatLayout::transposed(8, 16), MatLayout::transposed(16, 12));
    assert_eq!(vec4_modes(at, bt, d), (2, 2));
    // Misaligned offset, odd row stride, non-unit strides everywhere.
    assert_eq!(vec4_modes(a.at(1), b, d), (0, 1));
    let odd = MatLayout {
        row_stride: 17,
        ..a
    };
    assert_eq!(vec4_modes(odd, b.broadcast(), d).0, 0);
    let strided = MatLayout {
        col_stride: 2,
        row_stride: 32,
        ..a
    };
    assert_eq!(vec4_modes(strided, b, d).0, 0);
    // A single row may have any row stride (it is never stepped).
    let row = MatLayout { row_stride: 3, ..a };
    let d1 = MatmulDims { m: 1, ..d };
    assert_eq!(vec4_modes(row, b, d1).0, 1);
    assert_eq!(vec4_modes(row, b, d).0, 0);
}

#[test]
fn layouts_and_extents() {
    let t = MatLayout::transposed(3, 5);
    assert_eq!((t.row_stride, t.col_stride, t.batch_stride), (1, 3, 15));
    assert_eq!(t.last_index(2, 3, 5), Some(15 + 2 + 12));
    let c = MatLayout::contiguous(3, 5).broadcast().at(7);
    assert_eq!(c.last_index(4, 3, 5), Some(7 + 10 + 4));
    assert_eq!(MatLayout::contiguous(1, 1).last_index(1, 1, 1), Some(0));
    let huge = MatLayout::contiguous(4, 4).at(usize::MAX - 5);
    assert_eq!(huge.last_index(3, 2, 4), None);
}

#[test]
fn workgroup_tiles() {
    assert_eq!(MatmulVariant::Naive.workgroup_tile(), (16, 16));
    assert_eq!(MatmulVariant::Tiled.workgroup_tile(), (16, 16));
    assert_eq!(MatmulVariant::RegBlock.workgroup_tile(), (64, 64));
    assert_eq!(MatmulVariant::Vec4.workgroup_tile(), (64, 128));
    assert_eq!(
        MatmulDims {
            batch: 2,
            m: 3,
            n: 4,
            k: 5
        }
        .flops(),
        240
    );
}

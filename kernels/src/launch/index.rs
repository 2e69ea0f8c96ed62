//! Launchers for the index family (being written).

/// Params layouts of this family, for the layout test.
pub fn params_layouts() -> Vec<crate::launch::ParamsLayout> {
    Vec::new()
}

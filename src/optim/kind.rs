//! Choosing an optimizer by name (`--optimizer sgd|adam|adamw`), for the CLI and config files.

use std::str::FromStr;

use super::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use crate::error::{Error, Result, arg_err};
use crate::tensor::Tensor;

/// The optimizers kiln ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptimizerKind {
    /// `sgd`: [`Sgd`] with optional momentum.
    Sgd,
    /// `adam`: [`Adam`] with L2 weight decay.
    Adam,
    /// `adamw`: [`Adam`] with decoupled weight decay.
    AdamW,
}

impl OptimizerKind {
    /// Every kind, in CLI order.
    pub const ALL: [OptimizerKind; 3] = [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
        }
    }
}

impl FromStr for OptimizerKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<OptimizerKind> {
        let key = s.trim().to_ascii_lowercase();
        OptimizerKind::ALL
            .into_iter()
            .find(|k| k.name() == key)
            .map_or_else(
                || {
                    arg_err(
                        "optimizer",
                        format!("unknown optimizer `{s}`; expected one of sgd, adam, adamw"),
                    )
                },
                Ok,
            )
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Build an optimizer over `params` from CLI-level settings. `momentum` applies to SGD only
/// (no Nesterov); Adam and AdamW use PyTorch's betas (0.9, 0.999) and eps 1e-8, with
/// `weight_decay` as L2 (Adam) or decoupled (AdamW) decay.
pub fn build(
    kind: OptimizerKind,
    params: Vec<(String, Tensor)>,
    lr: f32,
    weight_decay: f32,
    momentum: f32,
) -> Result<Box<dyn Optimizer>> {
    Ok(match kind {
        OptimizerKind::Sgd => Box::new(Sgd::new(
            params,
            SgdConfig {
                lr,
                momentum,
                nesterov: false,
                weight_decay,
            },
        )?),
        OptimizerKind::Adam | OptimizerKind::AdamW => {
            let defaults = match kind {
                OptimizerKind::AdamW => AdamConfig::adamw(lr),
                _ => AdamConfig::adam(lr),
            };
            let config = AdamConfig {
                weight_decay,
                ..defaults
            };
            Box::new(Adam::new(params, config)?)
        }
    })
}

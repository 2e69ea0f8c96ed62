//! Choosing an optimizer by name (`--optimizer sgd|adam|adamw|adam8bit|adamw8bit`), for the CLI
//! and config files.

use std::str::FromStr;

use super::{Adam, Adam8bit, AdamConfig, OffloadAdam, Optimizer, Sgd, SgdConfig};
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
    /// `adam8bit`: [`Adam8bit`] (8-bit moments) with L2 weight decay.
    Adam8bit,
    /// `adamw8bit`: [`Adam8bit`] with decoupled weight decay.
    AdamW8bit,
}

impl OptimizerKind {
    /// Every kind, in CLI order.
    pub const ALL: [OptimizerKind; 5] = [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
        OptimizerKind::Adam8bit,
        OptimizerKind::AdamW8bit,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
            OptimizerKind::Adam8bit => "adam8bit",
            OptimizerKind::AdamW8bit => "adamw8bit",
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
                        format!(
                            "unknown optimizer `{s}`; expected one of sgd, adam, adamw, \
                             adam8bit, adamw8bit"
                        ),
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
/// (no Nesterov); Adam and AdamW (and their 8-bit forms) use PyTorch's betas (0.9, 0.999) and
/// eps 1e-8, with `weight_decay` as L2 (Adam) or decoupled (AdamW) decay.
pub fn build(
    kind: OptimizerKind,
    params: Vec<(String, Tensor)>,
    lr: f32,
    weight_decay: f32,
    momentum: f32,
) -> Result<Box<dyn Optimizer>> {
    build_with(kind, params, (lr, weight_decay, momentum), false)
}

/// [`build`] with `(lr, weight_decay, momentum)`, and with `offload` (`--offload-optimizer`)
/// the Adam moments in host memory and the update on the CPU ([`OffloadAdam`]); offload is for
/// `adam` and `adamw` only (the error says so for the others).
pub fn build_with(
    kind: OptimizerKind,
    params: Vec<(String, Tensor)>,
    (lr, weight_decay, momentum): (f32, f32, f32),
    offload: bool,
) -> Result<Box<dyn Optimizer>> {
    if offload && !matches!(kind, OptimizerKind::Adam | OptimizerKind::AdamW) {
        return arg_err(
            "offload-optimizer",
            format!(
                "optimizer state offload keeps Adam's f32 moments in host memory and needs \
                 --optimizer adam or adamw, not {kind}"
            ),
        );
    }
    if kind == OptimizerKind::Sgd {
        let c = SgdConfig {
            lr,
            momentum,
            nesterov: false,
            weight_decay,
        };
        return Ok(Box::new(Sgd::new(params, c)?));
    }
    let defaults = match kind {
        OptimizerKind::AdamW | OptimizerKind::AdamW8bit => AdamConfig::adamw(lr),
        _ => AdamConfig::adam(lr),
    };
    let config = AdamConfig {
        weight_decay,
        ..defaults
    };
    Ok(match kind {
        OptimizerKind::Adam8bit | OptimizerKind::AdamW8bit => {
            Box::new(Adam8bit::new(params, config)?)
        }
        _ if offload => Box::new(OffloadAdam::new(params, config)?),
        _ => Box::new(Adam::new(params, config)?),
    })
}

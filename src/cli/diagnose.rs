//! `kiln diagnose RUN`: what went wrong in a training run, in plain words with the evidence
//! (the rules and thresholds are in [`crate::train::diagnose`]).

use std::path::PathBuf;

use clap::Args;

use super::Result;
use crate::train::diagnose;

/// Flags of `kiln diagnose`.
#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// The run directory (kiln train's --out, e.g. runs/digits-mlp-1).
    pub run: PathBuf,
    /// Print the findings as JSON ({run, epochs, measured_steps, findings: [{kind, summary,
    /// evidence}]}).
    #[arg(long)]
    pub json: bool,
}

/// Run `kiln diagnose`.
pub fn run(a: DiagnoseArgs) -> Result<()> {
    let d = diagnose::diagnose(&a.run)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", diagnose::render(&d));
    }
    Ok(())
}

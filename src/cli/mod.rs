//! The `kiln` binary's subcommands, one file each.

mod demo;
mod devices;

use clap::{Parser, Subcommand};

/// kiln: train neural networks on any GPU (Vulkan, Metal, DX12, OpenGL).
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a small MLP classifier on a synthetic two-moons problem (a quick end-to-end demo).
    Train(demo::DemoArgs),
    /// List the GPU adapters kiln can use, with backend, type, limits and features.
    Devices,
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow_like::Result<()> {
    match cli.command {
        Command::Train(a) => demo::run(a),
        Command::Devices => devices::run(),
    }
}

/// Error plumbing for the CLI: any error, printed as one paragraph.
pub mod anyhow_like {
    /// A CLI error: a message (already naming what was wrong and where).
    #[derive(Debug)]
    pub struct Error(pub String);

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl<E: std::error::Error> From<E> for Error {
        fn from(e: E) -> Self {
            Error(e.to_string())
        }
    }

    /// CLI result.
    pub type Result<T> = std::result::Result<T, Error>;
}

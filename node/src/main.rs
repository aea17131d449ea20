//! `prlx-node`: the operator daemon. It will pull dispatches addressed to this node from the
//! log, decrypt them, run the model with ONNX Runtime, commit to the result and report it.
//! That work is its own issue (the node daemon); until it lands this binary only says so,
//! rather than pretending to serve.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "prlx-node",
    version,
    about = "ParalleliX operator node (not yet implemented: see the node daemon issue)"
)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    Cli::parse();
    anyhow::bail!("prlx-node does not serve yet: the node daemon is not implemented in this build")
}

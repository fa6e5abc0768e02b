//! `ivr graph FLOW`: the flow as a Mermaid diagram.

use super::FlowDirs;
use crate::flow::{Library, graph};

pub fn run(name: &str, dirs: &FlowDirs) -> i32 {
    match Library::load_dirs(&dirs.flows, &dirs.prompts) {
        Ok((lib, _)) => match lib.flow(name) {
            Some(flow) => {
                print!("{}", graph::mermaid(flow));
                0
            }
            None => {
                eprintln!("error: no flow named '{name}' in {}", dirs.flows.display());
                1
            }
        },
        Err(diags) => {
            eprint!("{diags}");
            1
        }
    }
}

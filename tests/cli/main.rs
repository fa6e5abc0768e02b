//! The `ivr` binary as an operator runs it: `ivr check`, `ivr call`, `ivr patients import`, and
//! `ivr serve` killed and started again.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod call;
mod check;
mod crash;
mod package;
mod readme;
mod roster;

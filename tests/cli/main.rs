//! The `ivr` binary as an operator runs it: `ivr check`, `ivr call`, `ivr patients import`,
//! `ivr tokens`, `ivr serve` killed and started again, and `ivr serve`'s log while staff sign in.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod call;
mod check;
mod crash;
mod package;
mod readme;
mod roster;
mod staff;
mod tokens;

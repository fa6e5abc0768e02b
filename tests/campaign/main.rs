//! Whole campaigns: a simulated day of calls on a manual clock, two instances sharing one, and
//! the real `ivr serve` killed in the middle of one, and attempts whose call id a crash lost.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod day;
mod fault;
mod outside;
mod unrecorded;

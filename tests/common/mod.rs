//! What every test program shares: a running server (`app`), fresh databases on both back ends
//! (`db`), the peers written by others (`peers`), and the patients and rosters the tests use
//! (`patients`). Each program includes this directory with `#[path = "../common/mod.rs"]`; not
//! every program uses every part.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod app;
pub mod browser;
#[macro_use]
pub mod db;
pub mod figures;
pub mod patients;
pub mod peers;
pub mod staff;

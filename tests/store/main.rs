//! The store on both back ends: every test runs once on SQLite and once on PostgreSQL
//! (`…::sqlite::NAME` and `…::postgres::NAME`), each on a database of its own (`common::db`).

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod campaign;
mod conformance;
mod figures;
mod followups;
mod links;
mod personal;
mod tls;
mod trends;
mod users;

//! The webhook server, started for real on 127.0.0.1 port 0, driven by signed webhooks as a
//! carrier sends them. One binary for all server tests (`helpers` starts apps).

mod cli;
mod dialer;
mod helpers;
mod numbers;
mod postgres;
mod proxy;
mod reload;
mod roster;
mod slow_clients;
// The store suite's helpers: fresh SQLite and PostgreSQL databases (only some are used here).
#[allow(dead_code, unused_macros)]
#[path = "../support/mod.rs"]
mod support;
mod webhooks;

#[path = "../peers/mod.rs"]
mod peers;

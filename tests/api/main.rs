//! The server and what it talks to over HTTP. The webhook server, started for real on 127.0.0.1
//! port 0 and driven by signed webhooks as a carrier sends them (`common::app` starts apps); its
//! JSON API checked against docs/openapi.json; the carrier simulator; the Twilio REST client and
//! the outbox against stand-ins and Prism; e-mail against an SMTP server; signatures and TwiML
//! against Twilio's own helper library; the staff pages' security rules and `ivr users`.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod cli;
mod dialer;
mod email;
mod figures;
mod followups;
mod numbers;
mod openapi;
mod outbox;
mod postgres;
mod proxy;
mod reload;
mod report;
mod roster;
mod schemathesis;
mod scopes;
mod signature_interop;
mod simulator;
mod slow_clients;
mod staff;
mod staff_pages;
mod staff_security;
mod transfer;
mod twilio_client;
mod twilio_contract;
mod twiml_interop;
mod urgent;
mod webhooks;

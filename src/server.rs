//! `ivr serve`: settings → store → flows → router, then serve until SIGINT/SIGTERM. In-flight
//! requests finish before the process exits; each turn is one transaction, so nothing is
//! half-written whenever it stops.

use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::carrier::signature::AuthToken;
use crate::carrier::simulator as sim;
use crate::carrier::twilio::{Sender, TwilioClient};
use crate::carrier::webhook::WebhookClient;
use crate::config::Settings;
use crate::flow::Diagnostics;
use crate::flow::registry::{FlowVersion, Registry};
use crate::http::{self, AppState};
use crate::store::{Store, StoreError};

mod listen;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("call flows have errors:\n{0}")]
    Flows(Diagnostics),
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
    /// The address cannot be bound: named with the setting that changes it.
    #[error(
        "cannot listen on {addr}: {source}; {hint}, or set server.listen in ivr.toml (or IVR_SERVER__LISTEN) to another address"
    )]
    Bind { addr: SocketAddr, source: std::io::Error, hint: &'static str },
    #[error("watching flow files: {0}")]
    Watch(#[from] notify::Error),
    #[error("carrier: {0}")]
    Carrier(String),
    #[error("email: {0}")]
    Email(String),
}

/// Binds the listening address, or says which setting changes it.
async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).await.map_err(|source| {
        let hint = match source.kind() {
            std::io::ErrorKind::AddrInUse => "another program (perhaps another ivr serve) listens there: stop it",
            std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges: use a port above 1024",
            _ => "check the address is one of this machine's",
        };
        ServeError::Bind { addr, source, hint }
    })
}

/// A running server: its address, and a handle to stop it.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The outbox dispatcher, the dialer, the upkeep and the daily planner, each with its stop signal.
    workers: Vec<(tokio::task::JoinHandle<()>, Arc<tokio::sync::Notify>)>,
    _watcher: notify::RecommendedWatcher,
}

impl Server {
    /// Opens the store, loads flows, binds `server.listen` (port 0 picks a free port) and
    /// starts serving in the background.
    pub async fn start(settings: &Settings) -> Result<Server, ServeError> {
        Server::start_with_clock(settings, crate::scheduler::clock::Clock::System).await
    }

    /// [`Server::start`] on a clock of the caller's (tests run a day of calls on a manual one).
    pub async fn start_with_clock(
        settings: &Settings,
        clock: crate::scheduler::clock::Clock,
    ) -> Result<Server, ServeError> {
        let store =
            Store::open(settings.database.url.expose_secret(), settings.database.sqlite_synchronous == "full").await?;
        let applied = store.migrate().await?;
        if applied > 0 {
            tracing::info!(applied, "database migrated");
        }
        let flows = Arc::new(
            Registry::load(settings.flows.dir.clone(), settings.flows.prompts_dir.clone())
                .map_err(ServeError::Flows)?,
        );
        // Calls in progress finish on the version they started on, even if the files changed
        // while the server was down.
        let restored =
            flows.restore(&store.flows().in_use().await?.into_iter().map(FlowVersion::from).collect::<Vec<_>>());
        if restored > 0 {
            tracing::info!(restored, "flow versions of calls in progress restored from the database");
        }
        let watcher = flows.watch()?;
        let listener = bind(settings.server.listen).await?;
        let addr = listener.local_addr()?;
        let public_url = match &settings.server.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{addr}"),
        };
        let token_text = match &settings.carrier.auth_token {
            Some(t) => t.expose_secret().to_string(),
            None => {
                tracing::warn!(
                    "no carrier.auth_token: a random one is made at start, so only the built-in simulator can sign webhooks; set carrier.auth_token to call in with ivr call --url"
                );
                random_token()
            }
        };
        let token = AuthToken::new(token_text.clone());
        let simulator = match settings.carrier_kind() {
            "simulator" => Some(Arc::new(simulator(settings, &store, &token, &public_url, addr)?)),
            _ => None,
        };
        // The simulator serves Twilio's API on this very server: SMS (and calls) go through the
        // same client, over HTTP, as with Twilio.
        let carrier = match &simulator {
            Some(_) => TwilioClient::new(&format!("http://{addr}/simulator"), &sim::account_sid(), token_text),
            None => TwilioClient::from_settings(&settings.carrier),
        }
        .map_err(|e| ServeError::Carrier(e.to_string()))?;
        let sender = settings.carrier.from.clone().unwrap_or_else(|| SIMULATOR_FROM.to_string());
        let state = AppState {
            store,
            flows: flows.clone(),
            token: Arc::new(token),
            public_url: public_url.clone().into(),
            trust_forwarded_headers: settings.server.trust_forwarded_headers,
            body_limit: settings.server.body_limit,
            inbound_flow: settings.flows.inbound.clone().into(),
            verify_limiter: http::api::limiter(settings.api.verify_per_minute),
            issue_limits: http::api::IssueLimits::new(
                settings.api.issue_per_minute,
                settings.api.issue_per_patient_per_hour,
            ),
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            simulator,
            email_configured: settings.email.is_some(),
            send_links: settings.web.send_links,
            outbox: crate::notify::outbox::Policy::from_settings(&settings.outbox),
            turns: crate::calls::TurnContext {
                centre_phone: settings.centre.phone.clone().into(),
                desk: Arc::new(crate::calls::Desk {
                    to: settings.transfer_to(),
                    caller_id: Some(sender.clone()),
                    hours: settings.opening_hours(),
                }),
                flows: flows.clone(),
                issuer: Arc::new(settings.issuer()),
                public_url: public_url.clone().into(),
            },
            metrics: http::metrics_handle(),
            campaign: Arc::new(crate::scheduler::dialer::Campaign {
                policy: settings.dial_policy(),
                hours: settings.calling_hours(),
                clock: clock.clone(),
            }),
            dialer_wake: Arc::new(tokio::sync::Notify::new()),
            staff: Arc::new(http::ui::StaffContext::new(settings.session_rules(), &public_url)),
        };
        let dispatcher = crate::notify::outbox::Dispatcher {
            store: state.store.clone(),
            key: state.turns.issuer.key.clone(),
            sms: crate::notify::outbox::SmsGateway::Twilio {
                client: carrier.clone(),
                sender: Sender::From(sender.clone()),
            },
            email: match &settings.email {
                Some(e) => Some(Arc::new(
                    crate::notify::email::EmailSender::new(e).map_err(|e| ServeError::Email(e.to_string()))?,
                )),
                None => None,
            },
            policy: state.outbox.clone(),
            public_url: public_url.clone(),
            wake: state.outbox_wake.clone(),
            reissue: Some(crate::notify::outbox::Reissue {
                flows: state.turns.flows.clone(),
                issuer: state.turns.issuer.clone(),
            }),
            owner: crate::notify::outbox::instance_name(addr),
            started: chrono::Utc::now(),
        };
        let mut workers = Vec::new();
        let stop = Arc::new(tokio::sync::Notify::new());
        workers.push((tokio::spawn(dispatcher.run(stop.clone())), stop));
        let dialer = crate::scheduler::dialer::Dialer::new(
            state.store.clone(),
            carrier,
            sender,
            public_url.clone(),
            state.campaign.clone(),
            state.dialer_wake.clone(),
        )
        .with_lock(state.store.dialer_lock())
        .with_web_requests(crate::scheduler::web::WebRequests {
            issuer: (*state.turns.issuer).clone(),
            public_url: public_url.clone(),
            outbox_wake: Some(state.outbox_wake.clone()),
        });
        let stop = Arc::new(tokio::sync::Notify::new());
        workers.push((tokio::spawn(Arc::new(dialer).run(stop.clone())), stop));
        // Numbers no call read are followed up, and retention runs daily, on every instance
        // (both are safe to run concurrently).
        let upkeep = crate::scheduler::upkeep::Upkeep {
            store: state.store.clone(),
            hours: Arc::new(settings.calling_hours()),
            retention: settings.retention,
            clock: clock.clone(),
        };
        let stop = Arc::new(tokio::sync::Notify::new());
        workers.push((tokio::spawn(upkeep.run(stop.clone())), stop));
        // Urgent items are told to the on-duty contacts, and escalated, on every instance: each
        // notice is written once, whichever instance writes it first.
        let duty = settings.duty();
        metrics::gauge!("ivr_urgent_contact_lists").set(duty.lists.len() as f64);
        if duty.lists.is_empty() {
            tracing::warn!(
                "no [[alerts.on_duty]] contact list: urgent follow-up items reach only the pages (/ui/), nobody is told by SMS or e-mail"
            );
        }
        let urgent = crate::scheduler::urgent::UrgentNotices {
            store: state.store.clone(),
            duty: Arc::new(duty),
            key: state.turns.issuer.key.clone(),
            public_url: public_url.clone(),
            clock: clock.clone(),
            outbox_wake: state.outbox_wake.clone(),
        };
        let stop = Arc::new(tokio::sync::Notify::new());
        workers.push((tokio::spawn(urgent.run(stop.clone())), stop));
        if settings.scheduler.autostart {
            let stop = Arc::new(tokio::sync::Notify::new());
            let daily = crate::scheduler::daily::run_daily(
                planner(settings),
                state.store.clone(),
                settings.plan_at(),
                state.dialer_wake.clone(),
                clock.clone(),
                stop.clone(),
            );
            workers.push((tokio::spawn(daily), stop));
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // A client that sends its body slowly gets an error answer (and its connection closed)
        // after `body_read_timeout`; see `listen` for the header-read timeout and the cap.
        let body_read_timeout = settings.server_body_read_timeout();
        let app = http::router(state.clone())
            .layer(axum::middleware::map_request(move |r| http::deadline::deadline(r, body_read_timeout)));
        let limits = listen::Limits {
            header_read_timeout: settings.server_header_read_timeout(),
            max_connections: settings.server.max_connections,
        };
        let task = tokio::spawn(listen::serve(listener, app, limits, async move {
            tokio::select! {
                _ = rx => {},
                _ = shutdown_signal() => {},
            }
            tracing::info!("shutting down: finishing requests in flight");
        }));
        tracing::info!(%addr, public_url, database = state.store.backend(), flows = state.flows.flow_count(), "listening");
        Ok(Server { addr, state, shutdown: Some(tx), task, workers, _watcher: watcher })
    }

    /// Stops accepting, lets requests in flight finish, and returns.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        self.stop_workers().await;
    }

    /// Stops the background workers; each finishes the piece of work in hand.
    async fn stop_workers(&mut self) {
        for (_, stop) in &self.workers {
            stop.notify_one();
        }
        for (worker, _) in self.workers.drain(..) {
            let _ = worker.await;
        }
    }

    /// Serves until a signal stops it.
    pub async fn wait(mut self) -> Result<(), ServeError> {
        (&mut self.task).await.map_err(|e| ServeError::Io(std::io::Error::other(e)))??;
        // The dispatcher finishes the send in hand; unsent messages wait in the outbox; calls
        // not yet dialled wait in their jobs.
        self.stop_workers().await;
        Ok(())
    }
}

/// SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    Shutdown::listen().recv().await
}

/// A listener for SIGINT (Ctrl-C) and SIGTERM, registered when it is made: a signal that comes
/// while its owner is busy elsewhere waits for the next [`Shutdown::recv`] instead of being lost.
pub struct Shutdown {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Shutdown {
    pub fn listen() -> Shutdown {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Shutdown {
                int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
                term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            }
        }
        #[cfg(not(unix))]
        Shutdown {}
    }

    /// Waits for the signal.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {},
            _ = self.term.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The daily planner as configured.
pub fn planner(settings: &Settings) -> crate::scheduler::daily::Planner {
    crate::scheduler::daily::Planner {
        hours: Arc::new(settings.calling_hours()),
        capacity: settings.area_capacity(),
        flow: settings.flows.inbound.clone(),
        links: settings.web.send_links.then(|| settings.link_sender()),
        web_grace: Some(settings.web_grace()),
    }
}

/// The caller id of simulated calls and SMS when `carrier.from` is not set.
const SIMULATOR_FROM: &str = "+815000000000";

/// The built-in carrier: signs webhooks with the server's token, sends them to this server
/// (to the listen address when the public URL is a proxy's), and finds birth dates in the
/// roster.
fn simulator(
    settings: &Settings,
    store: &Store,
    token: &AuthToken,
    public_url: &str,
    addr: SocketAddr,
) -> Result<sim::Simulator, ServeError> {
    let actual = format!("http://{addr}");
    let mut webhooks = WebhookClient::new(token.clone());
    if public_url != actual {
        webhooks = webhooks.behind_proxy(public_url, &actual);
    }
    let store = store.clone();
    let people: sim::People = Arc::new(move |phone: String| {
        let store = store.clone();
        Box::pin(async move { store.patients().by_phone(&phone).await.ok().flatten().and_then(|p| p.birth_md) })
    });
    let options = sim::Options {
        auth_token: token.clone(),
        webhooks,
        people,
        speed: settings.carrier.simulator_speed,
        log: settings.carrier.simulator_log.clone(),
    };
    sim::Simulator::new(options).map_err(|e| ServeError::Carrier(format!("carrier.simulator_log: {e}")))
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn an_address_in_use_is_named_with_the_setting_that_changes_it() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = super::bind(addr).await.unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot listen on {addr}: ")), "{err}");
        assert!(
            err.contains("another program") && err.contains("server.listen") && err.contains("IVR_SERVER__LISTEN"),
            "{err}"
        );
    }
}

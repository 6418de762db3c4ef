//! A validator on real sockets: commonware's tokio runtime (on a thread of its own, since it
//! owns its executor) and its authenticated `lookup` network (every validator's key and
//! address known up front, connections encrypted and authenticated with the validators'
//! ed25519 keys). The consensus journal lives under `storage`.

use crate::{start, Chain, KeyError, Mailbox, Timeouts, ValidatorKey};
use commonware_cryptography::{ed25519, ChaCha20Poly1305, Signer};
use commonware_p2p::authenticated::lookup;
use commonware_p2p::{Address, AddressableManager};
#[cfg(feature = "test-utils")]
use commonware_runtime::Spawner;
use commonware_runtime::{Quota, Runner, Supervisor};
use commonware_stream::cups::{self, Cups};
use commonware_stream::sake::{self, Sake};
use commonware_utils::{ordered::Map, NZUsize, NZU32};
use ledger::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Where a validator listens and finds the others.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The address the other validators dial.
    pub listen: SocketAddr,
    /// Every other validator: its key and the address it listens on.
    pub peers: Vec<(ValidatorKey, SocketAddr)>,
    /// The consensus journal's directory.
    pub storage: PathBuf,
    /// The engine's timeouts and the block pace.
    pub timeouts: Timeouts,
}

/// Why a validator did not start.
#[derive(Debug, Error)]
pub enum NetError {
    /// A key in the validator set or the peer list is not a validator's.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The same key appears twice among the peers.
    #[error("the peer list names a key twice")]
    DuplicatePeer,
    /// The runtime ended before the validator was running (its start failed; see the log).
    #[error("the validator's runtime stopped before it started")]
    Stopped,
    /// The operating system would not start the validator's thread.
    #[error("cannot start the validator's thread: {0}")]
    Thread(std::io::Error),
}

/// A validator running on its own thread; [`Running::stop`] ends it.
pub struct Running {
    /// Where users submit transactions.
    pub mailbox: Mailbox,
    stop: Option<futures::channel::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stops the engine, the application and the network, and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What a validator started by [`spawn`] runs behind its application.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The consensus engine.
    Honest,
    /// Instead of the engine, [`crate::byzantine::equivocate`] on the votes channel.
    #[cfg(feature = "test-utils")]
    Equivocator,
}

/// Starts validator `key` of `chain` on the network `net`. Returns once the engine runs.
pub fn spawn<St: Store + Send + 'static>(
    chain: Arc<Chain<St>>,
    key: ed25519::PrivateKey,
    net: NetConfig,
) -> Result<Running, NetError> {
    spawn_as(Role::Honest, chain, key, net)
}

/// Starts a faulty validator for tests: on real sockets like [`spawn`], its application
/// relays payloads and transactions, but instead of the engine it double-signs every vote it
/// hears ([`crate::byzantine::equivocate`]).
#[cfg(feature = "test-utils")]
pub fn spawn_equivocator<St: Store + Send + 'static>(
    chain: Arc<Chain<St>>,
    key: ed25519::PrivateKey,
    net: NetConfig,
) -> Result<Running, NetError> {
    spawn_as(Role::Equivocator, chain, key, net)
}

fn spawn_as<St: Store + Send + 'static>(
    role: Role,
    chain: Arc<Chain<St>>,
    key: ed25519::PrivateKey,
    net: NetConfig,
) -> Result<Running, NetError> {
    // Without the test utilities an honest validator is the only kind.
    #[cfg(not(feature = "test-utils"))]
    let Role::Honest = role;
    let namespace = format!("agora/{}", chain.ledger().genesis().chain_id).into_bytes();
    let me = key.public_key();
    let mut addresses: Vec<(ValidatorKey, Address)> = vec![(me, Address::Symmetric(net.listen))];
    addresses.extend(net.peers.iter().map(|(k, a)| (k.clone(), Address::Symmetric(*a))));
    let peers = addresses.len();
    let addresses = Map::try_from(addresses).map_err(|_| NetError::DuplicatePeer)?;
    let (started, on_start) = std::sync::mpsc::channel::<Result<Mailbox, KeyError>>();
    let (stop, stopped) = futures::channel::oneshot::channel::<()>();
    let runtime = commonware_runtime::tokio::Config::new()
        .with_worker_threads(2)
        .with_storage_directory(net.storage.clone());
    let thread = std::thread::Builder::new()
        .name("validator".into())
        .spawn(move || {
            commonware_runtime::tokio::Runner::new(runtime).start(|context| async move {
                let handshake = Cups::<_, ChaCha20Poly1305>::new(
                    Sake {
                        signer: key.clone(),
                        synchrony_bound: Duration::from_secs(5),
                        max_handshake_age: Duration::from_secs(10),
                        version: sake::Version::V1,
                    },
                    cups::Version::V1,
                );
                let config = lookup::Config::local(
                    handshake,
                    &namespace,
                    net.listen,
                    NZUsize!(peers),
                    (crate::payload::MAX_PAYLOAD_BYTES + 1024) as u32,
                    NZUsize!(1024),
                );
                let (mut network, mut oracle) = lookup::Network::new(context.child("network"), config);
                let _ = oracle.track(0, addresses);
                let quota = Quota::per_second(NZU32!(10_000));
                let votes = network.register(crate::channels::VOTES, quota);
                let certificates = network.register(crate::channels::CERTIFICATES, quota);
                let resolver = network.register(crate::channels::RESOLVER, quota);
                let application = network.register(crate::channels::APPLICATION, quota);
                network.start();
                #[cfg(feature = "test-utils")]
                if role == Role::Equivocator {
                    let participants = match crate::participants(chain.ledger().genesis()) {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = started.send(Err(e));
                            return;
                        }
                    };
                    let me = key.public_key();
                    let Some(scheme) = crate::Scheme::signer(&namespace, participants, key) else {
                        let _ = started.send(Err(KeyError::NotAValidator(crate::ledger_key(&me))));
                        return;
                    };
                    let config = crate::app::Config {
                        me,
                        fetch_retry: net.timeouts.fetch,
                        block_time: net.timeouts.block_time,
                        keep_payloads: net.timeouts.keep_payloads,
                    };
                    let (app, mailbox) = crate::app::Application::new(chain, config, application);
                    let app = app.start(context.child("application"));
                    let votes = context
                        .child("byzantine")
                        .spawn(move |_| crate::byzantine::equivocate(scheme, votes));
                    let _ = started.send(Ok(mailbox));
                    let _ = stopped.await;
                    app.abort();
                    votes.abort();
                    return;
                }
                let validator = match start(
                    context.child("validator"),
                    chain,
                    key,
                    net.timeouts,
                    "consensus".into(),
                    oracle,
                    votes,
                    certificates,
                    resolver,
                    application,
                ) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = started.send(Err(e));
                        return;
                    }
                };
                let _ = started.send(Ok(validator.mailbox.clone()));
                // Runs until the handle is stopped or dropped.
                let _ = stopped.await;
                validator.abort();
            })
        })
        .map_err(NetError::Thread)?;
    let mailbox = on_start.recv().map_err(|_| NetError::Stopped)??;
    Ok(Running { mailbox, stop: Some(stop), thread: Some(thread) })
}

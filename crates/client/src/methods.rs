//! The JSON-RPC API's method names, declared once: the node registers exactly these (its tests
//! check the two lists are the same) and the client calls them. `docs/rpc.md` describes each.

/// Hands a signed transaction (borsh, as hex) to the mempool; answers its id, or the ledger's
/// reason for refusing it.
pub const SUBMIT_TRANSACTION: &str = "agora_submitTransaction";
/// Where a transaction is: pending in the mempool, included (with its receipt), or unknown.
pub const GET_TRANSACTION: &str = "agora_getTransaction";
/// An account's free balance and the nonce its next transaction must carry.
pub const ACCOUNT: &str = "agora_account";
/// One neuron by uid or hotkey: its keys, stake, axon endpoint and last epoch's scores.
pub const NEURON: &str = "agora_neuron";
/// The metagraph at a height (latest by default): per uid S, R, T, C, I, D, E, VT, W and B.
pub const METAGRAPH: &str = "agora_metagraph";
/// A committed block by height or hash, with its receipts and the epoch it ran, if any.
pub const BLOCK: &str = "agora_block";
/// One page of the neuron table, sorted on the node (the dashboard's table).
pub const NEURONS: &str = "agora_neurons";
/// Per-neuron stake share, incentive and emission over a range of heights.
pub const HISTORY: &str = "agora_history";
/// One neuron's row of W (weights it sets), its column (weights set on it) and its bonds.
pub const WEIGHTS: &str = "agora_weights";
/// What `agora localnet` knows beyond the chain: its peers' roles and how the incentive tracks the judge.
pub const LOCALNET: &str = "agora_localnet";
/// The dashboard's headline figures: chain id, mechanism, tempo, n, issuance, tau.
pub const NETWORK: &str = "agora_network";
/// The last committed block's height, hash, time and state root.
pub const HEAD: &str = "agora_head";
/// The finalized block, the latest notarized height, the BFT validator count and the
/// equivocations proved.
pub const STATUS: &str = "agora_status";
/// The genesis configuration and its hash, which identifies the chain.
pub const GENESIS: &str = "agora_genesis";
/// The proof-of-work difficulty a `register` must meet now.
pub const DIFFICULTY: &str = "agora_difficulty";
/// What a burned registration burns now, in base units.
pub const BURN: &str = "agora_burn";
/// The stake on a hotkey broken down: the owner's own, each nominator's, and the take.
pub const NOMINATORS: &str = "agora_nominators";
/// The hotkeys a coldkey has stake on, owned or nominated.
pub const STAKES: &str = "agora_stakes";
/// Every subnet (netuid 0, the genesis network, first): parameters, n, registered stake.
pub const SUBNETS: &str = "agora_subnets";
/// One subnet by netuid.
pub const SUBNET: &str = "agora_subnet";
/// Subscribes to every committed block (WebSocket only); notifications come as [`NEW_HEAD`].
pub const SUBSCRIBE_NEW_HEADS: &str = "agora_subscribeNewHeads";
/// The notification name of a [`SUBSCRIBE_NEW_HEADS`] subscription: one per committed block.
pub const NEW_HEAD: &str = "agora_newHead";
/// Ends a [`SUBSCRIBE_NEW_HEADS`] subscription.
pub const UNSUBSCRIBE_NEW_HEADS: &str = "agora_unsubscribeNewHeads";

/// Every method a node answers (the subscription's notification name, `agora_newHead`, is not
/// a method).
pub const ALL: [&str; 22] = [
    SUBMIT_TRANSACTION,
    GET_TRANSACTION,
    ACCOUNT,
    NEURON,
    METAGRAPH,
    BLOCK,
    NEURONS,
    HISTORY,
    WEIGHTS,
    LOCALNET,
    NETWORK,
    HEAD,
    STATUS,
    GENESIS,
    DIFFICULTY,
    BURN,
    NOMINATORS,
    STAKES,
    SUBNETS,
    SUBNET,
    SUBSCRIBE_NEW_HEADS,
    UNSUBSCRIBE_NEW_HEADS,
];

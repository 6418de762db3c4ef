//! The JSON-RPC API's method names, declared once: the node registers exactly these (its tests
//! check the two lists are the same) and the client calls them. `docs/rpc.md` describes each.

pub const SUBMIT_TRANSACTION: &str = "agora_submitTransaction";
pub const GET_TRANSACTION: &str = "agora_getTransaction";
pub const ACCOUNT: &str = "agora_account";
pub const NEURON: &str = "agora_neuron";
pub const METAGRAPH: &str = "agora_metagraph";
pub const BLOCK: &str = "agora_block";
pub const NEURONS: &str = "agora_neurons";
pub const HISTORY: &str = "agora_history";
pub const WEIGHTS: &str = "agora_weights";
pub const LOCALNET: &str = "agora_localnet";
pub const NETWORK: &str = "agora_network";
pub const HEAD: &str = "agora_head";
pub const STATUS: &str = "agora_status";
pub const GENESIS: &str = "agora_genesis";
pub const DIFFICULTY: &str = "agora_difficulty";
pub const BURN: &str = "agora_burn";
pub const NOMINATORS: &str = "agora_nominators";
pub const STAKES: &str = "agora_stakes";
pub const SUBNETS: &str = "agora_subnets";
pub const SUBNET: &str = "agora_subnet";
pub const SUBSCRIBE_NEW_HEADS: &str = "agora_subscribeNewHeads";
pub const NEW_HEAD: &str = "agora_newHead";
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

"""Agora for Python: join the market of the Bittensor papers from Python.

- `agora.wire`: the peer protocol, version 4 (axon, dendrite, tensors, signed requests and answers);
- `agora.chain`: the node's JSON-RPC over HTTP or WebSocket, and signed transactions
  (transfer, register by proof of work, serve, stake, unstake, set_weights);
- `agora.metagraph`: the network as numpy arrays and a plain table;
- `agora.tx`: the transaction encoding (docs/transactions.md), signing, ids, proof of work;
- `agora.wallet`: wallets in the on-disk format of `agora wallet`;
- `agora.errors`: the ledger's refusals as exceptions;
- `agora.standard`: the network standard (the basis every peer projects its answers on);
- `agora.torch_peer`: a PyTorch peer (needs `pip install ./python[torch]`).
"""

from .chain import Chain
from .errors import AgoraError, ChainUnreachable, RpcError, TxError
from .keys import Keypair, dev_key
from .metagraph import Metagraph
from .tx import UNITS_PER_TOKEN, tokens
from .wallet import Wallet

__version__ = "0.1.0"

__all__ = ["Chain", "AgoraError", "ChainUnreachable", "RpcError", "TxError", "Keypair", "dev_key", "Metagraph",
           "UNITS_PER_TOKEN", "tokens", "Wallet", "__version__"]

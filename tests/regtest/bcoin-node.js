#!/usr/bin/env node
// Start bcoin 1.0.2 as a regtest node that answers like Bitcoin Core.
//
// Why: Debian ships no bitcoind. bcoin is a full node in JavaScript, but its
// regtest parameters and a few RPC replies differ from Core's, and the Rust
// clients we test (bdk_bitcoind_rpc, ElectrumX in front of it) expect Core.
// Each adjustment below names the Core behaviour it restores. Only
// 127.0.0.1 is used; the node never dials out (--listen=false, no seeds).
'use strict';

const path = require('path');
const base = path.join(__dirname, 'node_modules', 'bcoin', 'lib');
const networks = require(path.join(base, 'protocol', 'networks'));
const RPC = require(path.join(base, 'node', 'rpc'));
const { RPCError } = require(path.join(__dirname, 'node_modules', 'bweb'));
const TX = require(path.join(base, 'primitives', 'tx'));
const Amount = require(path.join(base, 'btc', 'amount'));

// 1. Core's regtest address/key prefixes (bcrt, 0x6f/0xc4, 0xef, tpub/tprv).
const rt = networks.regtest;
rt.seeds = [];
rt.addressPrefix = {
  pubkeyhash: 0x6f, scripthash: 0xc4,
  witnesspubkeyhash: 0x03, witnessscripthash: 0x28, bech32: 'bcrt'
};
rt.keyPrefix = {
  privkey: 0xef, xpubkey: 0x043587cf, xprivkey: 0x04358394,
  xpubkey58: 'tpub', xprivkey58: 'tprv', coinType: 1
};
// 2. BIP34/65/66 enforced from height 1, as in Core's regtest, so CLTV is
// checked. (Segwit still activates by BIP9 at height 432: tests mine past it.)
rt.block.bip34height = 1;
rt.block.bip65height = 1;
rt.block.bip66height = 1;

const RPC_MISC = -1;
const RPC_INVALID_ADDRESS_OR_KEY = -5; // Core's "not found"
const RPC_VERIFY_ERROR = -25;
const RPC_VERIFY_REJECTED = -26;

// 3. "Not found" is -5 in Core (bdk_bitcoind_rpc relies on it during reorgs).
function notFoundIsMinus5(fn) {
  return async function (args, help) {
    try {
      return await fn.call(this, args, help);
    } catch (e) {
      if (e.code === RPC_MISC && /not found/i.test(e.message))
        e.code = RPC_INVALID_ADDRESS_OR_KEY;
      throw e;
    }
  };
}

// 4. Verbose headers/blocks: bits as hex, nonce, nTx; stale blocks -1 confs.
async function fixHeader(rpc, entry, json, ntx) {
  json.bits = entry.bits.toString(16).padStart(8, '0');
  json.nonce = entry.nonce;
  if (ntx !== undefined) json.nTx = ntx;
  if (!(await rpc.chain.isMainChain(entry))) json.confirmations = -1;
  return json;
}

const headerToJSON = RPC.prototype.headerToJSON;
RPC.prototype.headerToJSON = async function (entry) {
  return fixHeader(this, entry, await headerToJSON.call(this, entry));
};
const blockToJSON = RPC.prototype.blockToJSON;
RPC.prototype.blockToJSON = async function (entry, block, details) {
  const json = await blockToJSON.call(this, entry, block, details);
  return fixHeader(this, entry, json, block.txs.length);
};

// getblock: Core takes verbosity 0/1/2 as an integer.
const getBlock = RPC.prototype.getBlock;
RPC.prototype.getBlock = notFoundIsMinus5(async function (args, help) {
  if (typeof args[1] === 'number') {
    const v = args[1];
    args = [args[0], v >= 1, v >= 2];
  }
  return getBlock.call(this, args, help);
});
for (const name of ['getBlockHeader', 'getBlockHash', 'getRawTransaction'])
  RPC.prototype[name] = notFoundIsMinus5(RPC.prototype[name]);

// 5. sendrawtransaction validates against the mempool like Core: -26 with
// the reject reason, -25 for missing inputs; the txid on success.
RPC.prototype.sendRawTransaction = async function (args, help) {
  if (help || args.length < 1 || args.length > 2)
    throw new RPCError(RPC_MISC, 'sendrawtransaction "hexstring"');
  if (typeof args[0] !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(args[0]))
    throw new RPCError(-22, 'TX decode failed');
  let tx;
  try {
    tx = TX.fromRaw(Buffer.from(args[0], 'hex'));
  } catch (e) {
    throw new RPCError(-22, 'TX decode failed');
  }
  if (await this.chain.hasCoins(tx))
    throw new RPCError(-27, 'Transaction already in block chain');
  let missing;
  try {
    missing = await this.node.mempool.addTX(tx);
  } catch (e) {
    if (e.type === 'VerifyError')
      throw new RPCError(RPC_VERIFY_REJECTED, e.reason);
    throw e;
  }
  if (missing && missing.length > 0) {
    this.node.mempool.removeOrphan(tx.hash('hex'));
    throw new RPCError(RPC_VERIFY_ERROR, 'bad-txns-inputs-missingorspent');
  }
  return tx.txid();
};

// 6. getnetworkinfo.version is an integer in Core.
const getNetworkInfo = RPC.prototype.getNetworkInfo;
RPC.prototype.getNetworkInfo = async function (args, help) {
  const json = await getNetworkInfo.call(this, args, help);
  json.version = 250000;
  return json;
};

// 7. estimatesmartfee: Core's {feerate, blocks} or {errors, blocks}.
RPC.prototype.estimateSmartFee = async function (args, help) {
  const blocks = Math.max(1, Number(args[0]) || 1);
  const rate = this.fees ? this.fees.estimateFee(blocks, true) : 0;
  if (!rate)
    return { errors: ['Insufficient data or no feerate found'], blocks };
  return { feerate: Amount.btc(rate, true), blocks };
};

// 8. Tests only (no Core counterpart): evictmempooltx "txid" drops a
// transaction and its spenders from the mempool, as a restart of a node
// without a persistent mempool does: a zero-conf funding that vanished.
const util = require(path.join(base, 'utils', 'util'));
RPC.prototype.evictMempoolTx = async function (args, help) {
  if (help || args.length !== 1)
    throw new RPCError(RPC_MISC, 'evictmempooltx "txid"');
  const entry = this.node.mempool.getEntry(util.revHex(String(args[0])));
  if (!entry)
    throw new RPCError(RPC_INVALID_ADDRESS_OR_KEY, 'Transaction not in mempool');
  this.node.mempool.evictEntry(entry);
  return true;
};

const FullNode = require(path.join(base, 'node', 'fullnode'));
const node = new FullNode({
  config: false,
  argv: true,
  env: false,
  logConsole: true,
  logLevel: process.env.BCOIN_LOG || 'warning',
  network: 'regtest',
  memory: true,
  workers: false,
  listen: false,
  loader: require
});

process.on('unhandledRejection', (err) => { throw err; });
(async () => {
  await node.ensure();
  await node.open();
  node.rpc.add('evictmempooltx', node.rpc.evictMempoolTx);
  await node.connect();
  node.startSync();
  process.stdout.write('bcoin regtest ready\n');
})();

#!/usr/bin/env node
// Writes the deployment file of `scripts/chain.sh deploy` from DEP_* environment variables.
//
//   DEP_CHAIN_ID=31337 DEP_RPC_URL=... DEP_PRLX=0x... node scripts/deployment.js OUT.json
//
// The format is described in contracts/README.md ("Deployment file"). Addresses are written
// EIP-55 checksummed; amounts that may exceed 2^53 are decimal strings, small counts (chain
// id, block number, seconds, decimals) JSON numbers. The file is written to a temporary name
// and renamed, so a reader never sees half of it.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { keccak256 } = require('js-sha3');

const FORMAT = 1;

function env(name) {
  const v = process.env[name];
  if (v === undefined || v === '') throw new Error(`${name} is not set`);
  return v;
}

/** EIP-55 mixed-case checksum of a 20-byte hex address. */
function checksum(address) {
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) throw new Error(`${address} is not an address`);
  const lower = address.slice(2).toLowerCase();
  const hash = keccak256(lower);
  let out = '0x';
  for (let i = 0; i < 40; i++) out += parseInt(hash[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i];
  return out;
}

const addr = (name) => checksum(env(name));
const num = (name) => {
  const v = Number(BigInt(env(name)));
  if (!Number.isSafeInteger(v)) throw new Error(`${name} does not fit a JSON number`);
  return v;
};
const dec = (name) => BigInt(env(name)).toString();

function main() {
  const out = process.argv[2];
  if (!out) {
    console.error('usage: deployment.js OUT.json (values from DEP_* variables)');
    process.exit(64);
  }
  const deployment = {
    format: FORMAT,
    chainId: num('DEP_CHAIN_ID'),
    rpcUrl: env('DEP_RPC_URL'),
    deployedAtBlock: num('DEP_BLOCK'),
    roles: {
      deployer: addr('DEP_DEPLOYER'),
      coordinator: addr('DEP_COORDINATOR'),
      poster: addr('DEP_COORDINATOR'),
      settler: addr('DEP_COORDINATOR'),
      treasury: addr('DEP_TREASURY'),
      infra: addr('DEP_INFRA'),
    },
    token: {
      address: addr('DEP_PRLX'),
      name: 'ParalleliX',
      symbol: 'PRLX',
      decimals: num('DEP_DECIMALS'),
      totalSupply: dec('DEP_SUPPLY'),
    },
    contracts: {
      PRLX: addr('DEP_PRLX'),
      CreditEscrow: addr('DEP_ESCROW'),
      NodeStaking: addr('DEP_STAKING'),
      RewardsDistributor: addr('DEP_DISTRIBUTOR'),
      SablierComptroller: addr('DEP_COMPTROLLER'),
      LockupNFTDescriptor: addr('DEP_DESCRIPTOR'),
      LockupHelpers: addr('DEP_HELPERS'),
      LockupMath: addr('DEP_MATH'),
      SablierLockup: addr('DEP_LOCKUP'),
    },
    staking: {
      cooldownSeconds: num('DEP_COOLDOWN'),
    },
    escrow: {
      operatorsPct: 85,
      treasuryPct: 10,
      infraPct: 5,
    },
    rewardStream: {
      lockup: addr('DEP_LOCKUP'),
      streamId: dec('DEP_STREAM_ID'),
      sender: addr('DEP_DEPLOYER'),
      recipient: addr('DEP_DISTRIBUTOR'),
      depositAmount: dec('DEP_STREAM_AMOUNT'),
      startTime: num('DEP_STREAM_START'),
      durationSeconds: num('DEP_STREAM_DURATION'),
      cancelable: false,
      transferable: false,
    },
  };
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  const tmp = `${out}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, `${JSON.stringify(deployment, null, 2)}\n`);
  fs.renameSync(tmp, out);
}

try {
  main();
} catch (e) {
  console.error(`deployment.js: ${e.message}`);
  process.exit(1);
}

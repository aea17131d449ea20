#!/usr/bin/env node
// The rewards Merkle tree, as RewardsDistributor verifies it. Plain Node, no dependencies but
// js-sha3 (pinned in package.json; solc itself uses it).
//
//   node scripts/merkle.js tree FILE|-     # prints {root, total, claims: [{..., leaf, proof}]}
//   node scripts/merkle.js leaf EPOCH NODE_ID RECIPIENT AMOUNT
//
// Input of `tree` (JSON): {"epoch": "7", "claims": [{"nodeId": "0x..32 bytes", "recipient":
// "0x..20 bytes", "amount": "123"}, ...]}. Numbers may be JSON numbers or decimal/0x strings;
// output numbers are decimal strings.
//
// Leaf: keccak256(keccak256(abi.encode(uint256 epoch, bytes32 nodeId, address recipient,
// uint256 amount))), OpenZeppelin's standard double-hashed leaf. Inner node: keccak256 of the
// two children, smaller first (MerkleProof's sorted-pair hashing, so a proof needs no
// left/right flags). Tree shape: that of @openzeppelin/merkle-tree's StandardMerkleTree --
// leaves sorted by hash, laid out as a complete binary tree in an array (root at 0, children of
// i at 2i+1 and 2i+2, leaves at the end in reverse order) -- so a root computed here equals
// `StandardMerkleTree.of(values, ["uint256","bytes32","address","uint256"]).root` for the same
// values, and any other implementation of that layout (the coordinator's) can be checked
// against it. A single claim is its own root, with an empty proof.
'use strict';

const fs = require('node:fs');
const { keccak256 } = require('js-sha3');

const hex = (buf) => `0x${Buffer.from(buf).toString('hex')}`;
const keccak = (buf) => Buffer.from(keccak256.arrayBuffer(buf));

function word(value, what) {
  const v = BigInt(value);
  if (v < 0n || v >= 1n << 256n) throw new Error(`${what}: ${value} is not a uint256`);
  return Buffer.from(v.toString(16).padStart(64, '0'), 'hex');
}

function fixedHex(value, bytes, what) {
  const s = String(value);
  if (!new RegExp(`^0x[0-9a-fA-F]{${bytes * 2}}$`).test(s)) {
    throw new Error(`${what}: ${s} is not ${bytes} bytes of 0x-hex`);
  }
  return Buffer.from(s.slice(2), 'hex');
}

/** The double-hashed leaf of one claim, as a Buffer. */
function leafOf(epoch, nodeId, recipient, amount) {
  const encoded = Buffer.concat([
    word(epoch, 'epoch'),
    fixedHex(nodeId, 32, 'nodeId'),
    Buffer.concat([Buffer.alloc(12), fixedHex(recipient, 20, 'recipient')]),
    word(amount, 'amount'),
  ]);
  return keccak(keccak(encoded));
}

function hashPair(a, b) {
  return Buffer.compare(a, b) <= 0 ? keccak(Buffer.concat([a, b])) : keccak(Buffer.concat([b, a]));
}

/** Builds the tree; returns {root, proofs} with proofs[i] the proof of leaves[i]. */
function build(leaves) {
  if (leaves.length === 0) throw new Error('a tree needs at least one leaf');
  const order = leaves.map((_, i) => i).sort((i, j) => Buffer.compare(leaves[i], leaves[j]));
  const n = leaves.length;
  const tree = new Array(2 * n - 1);
  const position = new Array(n); // leaves index -> tree index
  order.forEach((leafIndex, k) => {
    tree[tree.length - 1 - k] = leaves[leafIndex];
    position[leafIndex] = tree.length - 1 - k;
  });
  for (let i = tree.length - 1 - n; i >= 0; i--) tree[i] = hashPair(tree[2 * i + 1], tree[2 * i + 2]);
  const proofs = position.map((start) => {
    const proof = [];
    for (let i = start; i > 0; i = Math.floor((i - 1) / 2)) proof.push(tree[i % 2 === 1 ? i + 1 : i - 1]);
    return proof;
  });
  return { root: tree[0], proofs };
}

/** Checks a proof the way MerkleProof.verify does. */
function verify(proof, root, leaf) {
  return Buffer.compare(proof.reduce(hashPair, leaf), root) === 0;
}

function tree(input) {
  const epoch = BigInt(input.epoch);
  const claims = input.claims || [];
  const leaves = claims.map((c) => leafOf(epoch, c.nodeId, c.recipient, c.amount));
  const { root, proofs } = build(leaves);
  const seen = new Set();
  for (const c of claims) {
    const id = String(c.nodeId).toLowerCase();
    if (seen.has(id)) throw new Error(`nodeId ${c.nodeId} appears twice: each node claims once per epoch`);
    seen.add(id);
  }
  const total = claims.reduce((s, c) => s + BigInt(c.amount), 0n);
  return {
    epoch: epoch.toString(),
    root: hex(root),
    total: total.toString(),
    claims: claims.map((c, i) => {
      if (!verify(proofs[i], root, leaves[i])) throw new Error('internal: a proof does not verify');
      return {
        nodeId: String(c.nodeId).toLowerCase(),
        recipient: String(c.recipient),
        amount: BigInt(c.amount).toString(),
        leaf: hex(leaves[i]),
        proof: proofs[i].map(hex),
      };
    }),
  };
}

module.exports = { leafOf, build, verify, tree, hashPair };

if (require.main === module) {
  const [cmd, ...args] = process.argv.slice(2);
  try {
    if (cmd === 'tree' && args.length === 1) {
      const text = fs.readFileSync(args[0] === '-' ? 0 : args[0], 'utf8');
      process.stdout.write(`${JSON.stringify(tree(JSON.parse(text)), null, 2)}\n`);
    } else if (cmd === 'leaf' && args.length === 4) {
      process.stdout.write(`${hex(leafOf(...args))}\n`);
    } else {
      console.error('usage: merkle.js tree FILE|-  |  merkle.js leaf EPOCH NODE_ID RECIPIENT AMOUNT');
      process.exit(64);
    }
  } catch (e) {
    console.error(`merkle.js: ${e.message}`);
    process.exit(1);
  }
}

#!/usr/bin/env node
// Compiles contracts/src/*.sol with the pinned solcjs and writes one JSON per contract.
//
//   node scripts/build.js <out-dir>
//
// Run from contracts/ (scripts/chain.sh build does). It feeds the compiler exactly what
// `solcjs --bin --abi --optimize --base-path . --include-path node_modules src/*.sol` does
// (the same standard-JSON input and import lookup), but asks for a little more output
// (deployed bytecode, method identifiers) and writes it as one file per contract, so the Rust
// side and scripts/chain.sh deploy read a single stable artifact.
//
// Determinism: the output depends only on the source texts, their names and the settings,
// all fixed here (no absolute paths, no timestamps; keys are written in a fixed order). The
// bytecode ends in solc's CBOR metadata, whose IPFS hash is over the same inputs, so it is
// reproducible too. Warnings fail the build: a checked-in artifact should compile clean.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const solc = require('solc');

const OPTIMIZER_RUNS = 200; // solcjs --optimize without --optimize-runs
const BASE = '.';
const INCLUDE = ['node_modules'];

function sha256(text) {
  return crypto.createHash('sha256').update(text).digest('hex');
}

function main() {
  const outDir = process.argv[2];
  if (!outDir) {
    console.error('usage: node scripts/build.js <out-dir>');
    process.exit(64);
  }
  const files = fs
    .readdirSync('src')
    .filter((f) => f.endsWith('.sol'))
    .sort();
  if (files.length === 0) throw new Error('no src/*.sol');

  const sources = {};
  for (const f of files) {
    const name = `src/${f}`;
    sources[name] = { content: fs.readFileSync(name, 'utf8') };
  }
  // Every source text the compiler saw, by source unit name: ours and the imported ones.
  const seen = Object.fromEntries(Object.entries(sources).map(([k, v]) => [k, v.content]));
  const findImports = (unit) => {
    for (const prefix of [BASE, ...INCLUDE]) {
      const p = path.join(prefix, unit);
      if (fs.existsSync(p)) {
        const contents = fs.readFileSync(p, 'utf8');
        seen[unit] = contents;
        return { contents };
      }
    }
    return { error: `${unit}: not found under ${[BASE, ...INCLUDE].join(', ')}` };
  };

  const settings = {
    optimizer: { enabled: true, runs: OPTIMIZER_RUNS },
    outputSelection: {
      '*': { '*': ['abi', 'evm.bytecode', 'evm.deployedBytecode', 'evm.methodIdentifiers', 'metadata'] },
    },
  };
  const input = { language: 'Solidity', settings, sources };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  const problems = (output.errors || []).filter((e) => e.severity !== 'info');
  for (const e of problems) console.error(e.formattedMessage || e.message);
  if (problems.length > 0) process.exit(1);

  fs.mkdirSync(outDir, { recursive: true });
  for (const name of Object.keys(sources)) {
    const contractName = path.basename(name, '.sol');
    const c = output.contracts[name] && output.contracts[name][contractName];
    if (!c) throw new Error(`${name} does not define contract ${contractName}`);
    const meta = JSON.parse(c.metadata);
    // One digest over the settings and every source text this contract was compiled from
    // (its own file and what it imports, as the metadata lists them): what it was built from.
    const inputSha256 = sha256(
      JSON.stringify({
        optimizer: settings.optimizer,
        sources: Object.keys(meta.sources)
          .sort()
          .map((k) => [k, sha256(seen[k])]),
      }),
    );
    const artifact = {
      contractName,
      sourceName: name,
      compiler: {
        name: 'solc',
        version: solc.version().replace(/\.Emscripten.*$/, ''),
        optimizer: settings.optimizer,
        evmVersion: meta.settings.evmVersion,
      },
      sourceSha256: sha256(sources[name].content),
      inputSha256,
      abi: c.abi,
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
      methodIdentifiers: c.evm.methodIdentifiers,
    };
    if (Object.keys(c.evm.bytecode.linkReferences || {}).length > 0) {
      throw new Error(`${contractName} needs linking; our contracts are meant to be self-contained`);
    }
    fs.writeFileSync(path.join(outDir, `${contractName}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
  }
}

main();

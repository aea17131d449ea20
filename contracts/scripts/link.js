#!/usr/bin/env node
// Prints the creation bytecode of a compiled artifact with its library placeholders filled.
//
//   node scripts/link.js ARTIFACT.json [LIBRARY=0xADDRESS ...]
//
// solc leaves a 20-byte placeholder wherever a contract calls an external library and lists
// the places in `bytecode.linkReferences`: {sourceFile: {LibraryName: [{start, length}]}},
// with `start` a byte offset into the bytecode (so hex position 2 * start, after the "0x").
// Linking writes the library's deployed address into each of them. Every library the
// artifact references must be given, and every one given must be referenced: a typo is an
// error, not a contract that calls address zero.
'use strict';

const fs = require('node:fs');

function link(artifact, addresses) {
  const bytecode = artifact.bytecode;
  const object = typeof bytecode === 'string' ? bytecode : bytecode.object;
  const refs = (typeof bytecode === 'object' && bytecode.linkReferences) || artifact.linkReferences || {};
  let code = object.startsWith('0x') ? object.slice(2) : object;
  const used = new Set();
  for (const file of Object.keys(refs)) {
    for (const name of Object.keys(refs[file])) {
      const address = addresses[name];
      if (!address) throw new Error(`no address given for library ${name} (${file})`);
      if (!/^0x[0-9a-fA-F]{40}$/.test(address)) throw new Error(`${name}: ${address} is not an address`);
      used.add(name);
      for (const { start, length } of refs[file][name]) {
        if (length !== 20) throw new Error(`${name}: placeholder of ${length} bytes`);
        const at = 2 * start;
        const placeholder = code.slice(at, at + 40);
        if (!/^__\$[0-9a-f]{34}\$__$/.test(placeholder)) {
          throw new Error(`${name}: no placeholder at byte ${start} (found ${placeholder})`);
        }
        code = code.slice(0, at) + address.slice(2).toLowerCase() + code.slice(at + 40);
      }
    }
  }
  for (const name of Object.keys(addresses)) {
    if (!used.has(name)) throw new Error(`library ${name} is not referenced by this artifact`);
  }
  if (/__\$/.test(code)) throw new Error('placeholders left after linking');
  if (!/^([0-9a-f]{2})+$/i.test(code)) throw new Error('linked bytecode is not hex');
  return `0x${code}`;
}

module.exports = { link };

if (require.main === module) {
  const [file, ...pairs] = process.argv.slice(2);
  if (!file) {
    console.error('usage: link.js ARTIFACT.json [LIBRARY=0xADDRESS ...]');
    process.exit(64);
  }
  try {
    const addresses = {};
    for (const p of pairs) {
      const [name, address] = p.split('=');
      if (!name || !address) throw new Error(`bad argument '${p}', want LIBRARY=0xADDRESS`);
      addresses[name] = address;
    }
    process.stdout.write(`${link(JSON.parse(fs.readFileSync(file, 'utf8')), addresses)}\n`);
  } catch (e) {
    console.error(`link.js: ${e.message}`);
    process.exit(1);
  }
}

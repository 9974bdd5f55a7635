#!/usr/bin/env node
// Reproducible build of contracts/Federation.sol with the pinned solc-js (package.json).
//   node contracts/build.js            write contracts/build-input.json + mecfed/chain/data/Federation.json
//   node contracts/build.js --check    rebuild in memory, fail if the committed files differ
//   node contracts/build.js --test DIR also compile contracts/test/*.sol (not forge's *.t.sol)
//                                      -> DIR/test-artifacts.json
// Any compiler warning or error fails the build.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const solc = require('solc');

const ROOT = path.resolve(__dirname, '..');
const SRC = path.join(ROOT, 'contracts', 'Federation.sol');
const INPUT = path.join(ROOT, 'contracts', 'build-input.json');
// Shipped as package data so that an installed wheel has it (mecfed.chain.artifact).
const ARTIFACT = path.join(ROOT, 'mecfed', 'chain', 'data', 'Federation.json');
const TESTDIR = path.join(ROOT, 'contracts', 'test');
const EXPECTED_VERSION = '0.8.30';

// FIXED settings. optimizer runs: see contracts/README.md (gas numbers).
const SETTINGS = {
  evmVersion: 'cancun',
  metadata: { bytecodeHash: 'none' },
  optimizer: { enabled: true, runs: 1000000 },
  viaIR: true,
  outputSelection: {
    '*': {
      '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'evm.gasEstimates'],
    },
  },
};

function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k]);
    return out;
  }
  return v;
}
const stable = (v) => JSON.stringify(sortKeys(v), null, 2) + '\n';

function compile(sources) {
  const input = { language: 'Solidity', sources, settings: SETTINGS };
  const out = JSON.parse(solc.compile(JSON.stringify(input)));
  const diags = out.errors || [];
  for (const d of diags) process.stderr.write((d.formattedMessage || d.message) + '\n');
  if (diags.length) {
    const errs = diags.filter((d) => d.severity === 'error').length;
    throw new Error(`compilation produced ${errs} error(s) and ${diags.length - errs} warning(s); warnings are fatal`);
  }
  return { input, out };
}

function main() {
  const args = process.argv.slice(2);
  const version = solc.version();
  if (!version.startsWith(EXPECTED_VERSION + '+')) {
    throw new Error(`solc-js ${version} found, ${EXPECTED_VERSION} expected (npm ci)`);
  }
  const source = fs.readFileSync(SRC, 'utf8');
  const sources = { 'Federation.sol': { content: source } };

  if (args[0] === '--test') {
    const outDir = args[1];
    if (!outDir) throw new Error('--test needs an output directory');
    // The contracts the Python tests deploy; forge's *.t.sol (and test/utils/) are not theirs.
    const helpers = fs.readdirSync(TESTDIR).filter((f) => f.endsWith('.sol') && !f.endsWith('.t.sol'));
    for (const f of helpers.sort()) {
      sources[`test/${f}`] = { content: fs.readFileSync(path.join(TESTDIR, f), 'utf8') };
    }
    const { out } = compile(sources);
    const result = {};
    for (const [file, contracts] of Object.entries(out.contracts)) {
      for (const [name, c] of Object.entries(contracts)) {
        result[name] = { abi: c.abi, bytecode: '0x' + c.evm.bytecode.object, source: file };
      }
    }
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(path.join(outDir, 'test-artifacts.json'), stable(result));
    return 0;
  }

  const { input, out } = compile(sources);
  const c = out.contracts['Federation.sol'].Federation;
  const artifact = {
    contractName: 'Federation',
    abi: c.abi,
    bytecode: '0x' + c.evm.bytecode.object,
    deployedBytecode: '0x' + c.evm.deployedBytecode.object,
    compiler: { name: 'solc-js', version },
    settings: SETTINGS,
    sourceSha256: crypto.createHash('sha256').update(source).digest('hex'),
  };
  const files = [
    [INPUT, stable(input)],
    [ARTIFACT, stable(artifact)],
  ];
  if (args[0] === '--check') {
    let bad = 0;
    for (const [file, text] of files) {
      const rel = path.relative(ROOT, file);
      const cur = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
      if (cur !== text) {
        process.stderr.write(`STALE: ${rel} differs from a fresh build (run scripts/build_contract.sh)\n`);
        bad++;
      }
    }
    if (bad) return 1;
    process.stdout.write(`OK: contract artifacts are up to date (solc ${version})\n`);
    return 0;
  }
  if (args.length) throw new Error(`unknown arguments: ${args.join(' ')}`);
  fs.mkdirSync(path.dirname(ARTIFACT), { recursive: true });
  for (const [file, text] of files) fs.writeFileSync(file, text);
  const runtime = (c.evm.deployedBytecode.object.length / 2) | 0;
  process.stdout.write(`built ${path.relative(ROOT, ARTIFACT)} (solc ${version}, runtime ${runtime} bytes)\n`);
  const ext = (c.evm.gasEstimates || {}).external || {};
  for (const fn of ['bid(bytes32,uint96,bytes)', 'announce(uint96,uint16,uint32,uint32,bytes)']) {
    if (ext[fn]) process.stdout.write(`  solc gas estimate ${fn}: ${ext[fn]}\n`);
  }
  return 0;
}

try {
  process.exitCode = main();
} catch (e) {
  process.stderr.write(`build_contract: ${e.message}\n`);
  process.exitCode = 1;
}

// Standard-JSON solc-js driver behind scripts/solc-js (the `solc` forge and slither use).
//   node scripts/solc-js.js --version
//   node scripts/solc-js.js --standard-json OUT < input.json   (writes the output JSON to OUT)
// Other arguments native solc takes alongside --standard-json (--allow-paths, --base-path,
// --include-path, -) are accepted; sources a standard-JSON input names by path only are read
// from disk relative to the current directory, the base path or an include path.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require(path.join(__dirname, '..', 'node_modules', 'solc'));

const EXPECTED = '0.8.30';

function main(argv) {
  const version = solc.version();
  if (!version.startsWith(EXPECTED + '+')) {
    process.stderr.write(`solc-js ${version} found, ${EXPECTED} expected (npm ci)\n`);
    return 1;
  }
  if (argv.includes('--version') || argv.includes('-v')) {
    // The format of native solc, which forge and crytic-compile parse.
    process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${version}\n`);
    return 0;
  }
  const i = argv.indexOf('--standard-json');
  if (i < 0) {
    process.stderr.write('solc-js wrapper: only --version and --standard-json are supported\n');
    return 2;
  }
  const out = argv[argv.length - 1];
  const roots = ['.'];
  for (let j = 0; j < argv.length - 1; j++) {
    if (argv[j] === '--base-path' || argv[j] === '--include-path') roots.push(argv[j + 1]);
  }
  const input = fs.readFileSync(0, 'utf8');
  const findImports = (p) => {
    for (const r of roots) {
      const f = path.resolve(r, p);
      if (fs.existsSync(f)) return { contents: fs.readFileSync(f, 'utf8') };
    }
    return { error: `file not found: ${p}` };
  };
  fs.writeFileSync(out, solc.compile(input, { import: findImports }));
  return 0;
}

process.exitCode = main(process.argv.slice(2));

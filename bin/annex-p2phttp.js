#!/usr/bin/env node
'use strict';
// The annex-p2phttp command: see `annex-p2phttp serve --help`.
// --cpus sizes libuv's thread pool, which must happen before loading the server uses the pool.
require('../apps/serve/dist/cpus.js').applyCpus(process.argv.slice(2), process.env);
const { main } = require('../apps/serve/dist/cli.js');

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`annex-p2phttp: ${error && error.stack ? error.stack : String(error)}\n`);
    process.exitCode = 1;
  },
);
